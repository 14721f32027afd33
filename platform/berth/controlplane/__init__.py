"""The control plane's own backup and restore (issue 19): one archive with the database, the keys, every git
repository, the router's state and the registry's credentials; a restore onto a fresh or wiped machine that
re-adopts what Swarm still runs; a scheduled backup verified by restoring its database into a throwaway one."""
