"""The SQLite catalogue (the truth): its schema and migrations, its rows as the rest of the daemon sees
them, and the health of the disk it lives on. Uses media (the photo metadata it stores) and the top."""
