"""Device simulators that speak the real wire protocols, and the scenario runner."""
