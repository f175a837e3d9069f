//! Runs the real ipamctl binary on stores in the reference layout, and on
//! networks kept in a real etcd member (`cluster`).

mod basics;
mod cluster;
mod common;
mod etcd_ops;
mod guards;
mod import;
mod lists;
mod reads;
mod reconcile;
mod smaller;
