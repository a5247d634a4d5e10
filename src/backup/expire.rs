//! Retention: which backups and WAL `dbagent backups expire` removes (written by the backups-catalog work).
