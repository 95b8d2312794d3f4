//! The demos: [`pipeline`] (`ackline demo`: realistic traffic, `ackline run` nodes killed with
//! SIGKILL, a store outage, then the books) and [`queue`] (`ackline demo queue`: the embedded
//! queue's worker killed with SIGKILL, then the books).
//!
//! Invariant: a demo's run is seeded (`--seed`, random when absent and always printed), so a
//! failing run can be replayed.

pub(crate) mod pipeline;
pub(crate) mod queue;
