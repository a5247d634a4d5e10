//! Recomputing the checksums of stored backups (written by the backups-catalog work).
