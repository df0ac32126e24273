#!/usr/bin/env bash
# Backs up a node's data folder: the journal, the declaration cache and the users (SQLite online backups, safe
# while the node runs), the PKI folder (keys: keep the backups as private as the node) and the bd_seq counter;
# checks the journal copy's hash chain; keeps the newest KEEP backups (default 48).
#   scripts/backup.sh DATA_DIR BACKUP_DIR            (docs/install.md "Backups"; a systemd timer runs it hourly)
# Restore: stop the node, copy a backup's files back into DATA_DIR (as the node's user), start the node.
set -euo pipefail
data_dir=${1:?usage: backup.sh DATA_DIR BACKUP_DIR}
backup_dir=${2:?usage: backup.sh DATA_DIR BACKUP_DIR}
keep=${KEEP:-48}
here=$(cd "$(dirname "$0")" && pwd)
python=${SMARTGATE_PYTHON:-}
for candidate in "$here/../.venv/bin/python" "$here/../bin/python"; do
  [ -z "$python" ] && [ -x "$candidate" ] && python=$candidate
done
python=${python:-python3}
[ -d "$data_dir" ] || { echo "backup.sh: $data_dir is not a folder" >&2; exit 2; }
[ -f "$data_dir/journal.sqlite" ] || { echo "backup.sh: $data_dir has no journal.sqlite: not a node's data folder" >&2; exit 2; }
target="$backup_dir/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$target"
chmod 700 "$backup_dir" "$target"
"$python" - "$data_dir" "$target" <<'PY'
import sqlite3, sys
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("journal.sqlite", "declarations.sqlite", "users.sqlite"):
    if (source / name).exists():
        with sqlite3.connect(f"file:{source / name}?mode=ro", uri=True) as db, sqlite3.connect(target / name) as copy:
            db.backup(copy)
        print(f"backed up {source / name}")
PY
[ -d "$data_dir/pki" ] && cp -a "$data_dir/pki" "$target/pki"
[ -f "$data_dir/mqtt_bd_seq" ] && cp -a "$data_dir/mqtt_bd_seq" "$target/"
"$python" -m edge.cli journal verify --db "$target/journal.sqlite" >/dev/null \
  || { echo "backup.sh: the journal copy in $target does not verify" >&2; exit 1; }
echo "backup in $target (journal verified)"
ls -1d "$backup_dir"/*/ | sort | head -n -"$keep" | xargs -r rm -rf
