//! Helpers shared by every integration test: throwaway PostgreSQL clusters and the dbagent
//! command under test; HTTP recorders and an SMTP server for alert delivery; an S3 server
//! (moto) and a fault-injecting proxy in front of it.

#![allow(dead_code)]

pub mod alerting;
pub mod cluster;
pub mod collect;
pub mod dbagent;
pub mod moments;
pub mod recorder;
pub mod restore;
pub mod s3;
pub mod s3proxy;
pub mod sessions;
pub mod sidecar;
pub mod smtp;
