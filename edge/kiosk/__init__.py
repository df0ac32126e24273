"""Officer kiosk: JSON API and web page."""
