//! What goes wrong, and where: the nemesis that injects faults on a schedule
//! (random from the seed, or scripted), swarm testing's per-seed fault mix,
//! buggify's code-level fault points, the simulated disk (page cache, fsync,
//! power loss) and the network (TCP connections that partitions delay and
//! crashes reset).

pub mod buggify;
pub mod disk;
pub mod nemesis;
pub mod network;
pub mod swarm;
