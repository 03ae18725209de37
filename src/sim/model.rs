//! The simulated Redis deployment: instances that take `warmup` to become ready, each serving
//! up to a fixed capacity, with load spread evenly over the ready ones.
//!
//! Controllers reach it through [`super::cluster::SimCluster`], the daemon's `Cluster` trait
//! over this model: they ask it for counts and per-instance numbers and scale it.

use super::trace::Millis;

/// One Redis instance (pod) of the deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Instance {
    /// When it was requested plus the warm-up; it serves from then on.
    ready_at: Millis,
    /// What one always-ready instance would have served by the moment this one became ready;
    /// its own command counter is the difference from there (see [`ClusterModel::instances`]).
    served_before_ready: f64,
}

/// What an instance looks like to a sampler at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceState {
    /// Position in the StatefulSet (which one serves as master is the simulated cluster's
    /// business: [`super::cluster::SimCluster`]).
    pub ordinal: usize,
    pub ready: bool,
    /// Ops/s it serves now: its even share of the served load, 0 while warming.
    pub ops_per_sec: f64,
    /// Commands served since it became ready (Redis `total_commands_processed`).
    pub commands_processed: f64,
}

/// Instances oldest first. Because every instance warms for the same time and scale-down
/// removes the newest, `ready_at` never decreases along the list: the ready ones are a prefix.
#[derive(Debug, Clone)]
pub struct ClusterModel {
    capacity_per_replica: f64,
    warmup: Millis,
    instances: Vec<Instance>,
    ready: usize,
    /// Ops one instance ready since the start would have served by now: the integral of
    /// served / ready. Each instance's counter derives from it, so advancing time is O(1)
    /// however many instances there are.
    served_per_ready_instance: f64,
}

impl ClusterModel {
    /// `replicas` instances, all ready at `start`.
    pub fn new(replicas: u16, capacity_per_replica: f64, warmup: Millis, start: Millis) -> Self {
        let instances =
            vec![Instance { ready_at: start, served_before_ready: 0.0 }; usize::from(replicas)];
        Self {
            capacity_per_replica,
            warmup,
            ready: instances.len(),
            instances,
            served_per_ready_instance: 0.0,
        }
    }

    /// Instances asked for (StatefulSet `spec.replicas`), ready or warming.
    pub fn requested(&self) -> u16 {
        u16::try_from(self.instances.len()).unwrap_or(u16::MAX)
    }

    pub fn ready(&self) -> u16 {
        u16::try_from(self.ready).unwrap_or(u16::MAX)
    }

    /// Ops/s the ready instances can serve together.
    pub fn capacity(&self) -> f64 {
        self.capacity_per_replica * self.ready as f64
    }

    /// Ops/s actually served when `demand` is asked for.
    pub fn served(&self, demand: f64) -> f64 {
        demand.min(self.capacity())
    }

    /// Each ready instance's share of the served load.
    pub fn ops_per_ready_instance(&self, demand: f64) -> f64 {
        if self.ready == 0 { 0.0 } else { self.served(demand) / self.ready as f64 }
    }

    /// The earliest warm-up still running, if any.
    pub fn next_ready_at(&self) -> Option<Millis> {
        self.instances.get(self.ready).map(|i| i.ready_at)
    }

    /// Credits every ready instance with its share of `demand` over `millis`. The caller
    /// guarantees nothing changes inside the span (no warm-up ends, no scale).
    pub fn serve(&mut self, demand: f64, millis: Millis) {
        self.served_per_ready_instance +=
            self.ops_per_ready_instance(demand) * millis as f64 / 1000.0;
    }

    /// Marks instances whose warm-up has ended by `now` ready. Returns whether any did.
    pub fn finish_warmups(&mut self, now: Millis) -> bool {
        let before = self.ready;
        while self.instances.get(self.ready).is_some_and(|i| i.ready_at <= now) {
            self.instances[self.ready].served_before_ready = self.served_per_ready_instance;
            self.ready += 1;
        }
        self.ready != before
    }

    /// Sets the replica count at `now`. New instances serve after the warm-up; removed ones
    /// are the newest, so warming instances go first and then the youngest ready ones.
    pub fn scale_to(&mut self, replicas: u16, now: Millis) {
        let replicas = usize::from(replicas);
        if replicas < self.instances.len() {
            self.instances.truncate(replicas);
            self.ready = self.ready.min(replicas);
        } else {
            let ready_at = now.saturating_add(self.warmup);
            self.instances.resize(replicas, Instance { ready_at, served_before_ready: 0.0 });
        }
        self.finish_warmups(now);
    }

    /// Every instance as a sampler sees it under `demand`.
    pub fn instances(&self, demand: f64) -> impl ExactSizeIterator<Item = InstanceState> + '_ {
        let share = self.ops_per_ready_instance(demand);
        self.instances.iter().enumerate().map(move |(ordinal, instance)| {
            let ready = ordinal < self.ready;
            InstanceState {
                ordinal,
                ready,
                ops_per_sec: if ready { share } else { 0.0 },
                commands_processed: if ready {
                    self.served_per_ready_instance - instance.served_before_ready
                } else {
                    0.0
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_instances_serve_only_after_the_warmup() {
        let mut cluster = ClusterModel::new(1, 100.0, 30_000, 0);
        cluster.scale_to(3, 10_000);
        assert_eq!((cluster.requested(), cluster.ready()), (3, 1));
        assert_eq!(cluster.capacity(), 100.0);
        assert_eq!(cluster.next_ready_at(), Some(40_000));
        assert!(!cluster.finish_warmups(39_999));
        assert!(cluster.finish_warmups(40_000));
        assert_eq!((cluster.requested(), cluster.ready()), (3, 3));
        assert_eq!(cluster.next_ready_at(), None);
    }

    #[test]
    fn scale_down_removes_warming_instances_first() {
        let mut cluster = ClusterModel::new(2, 100.0, 30_000, 0);
        cluster.scale_to(4, 0);
        cluster.scale_to(3, 5_000);
        assert_eq!((cluster.requested(), cluster.ready()), (3, 2));
        cluster.scale_to(1, 6_000);
        assert_eq!((cluster.requested(), cluster.ready()), (1, 1));
    }

    #[test]
    fn zero_warmup_is_ready_at_once() {
        let mut cluster = ClusterModel::new(1, 100.0, 0, 0);
        cluster.scale_to(2, 1_000);
        assert_eq!(cluster.ready(), 2);
    }

    #[test]
    fn served_load_is_capped_and_split_evenly() {
        let cluster = ClusterModel::new(2, 100.0, 0, 0);
        assert_eq!(cluster.served(150.0), 150.0);
        assert_eq!(cluster.served(500.0), 200.0);
        assert_eq!(cluster.ops_per_ready_instance(150.0), 75.0);
    }

    #[test]
    fn counters_start_when_an_instance_becomes_ready() {
        let mut cluster = ClusterModel::new(1, 100.0, 10_000, 0);
        cluster.serve(50.0, 10_000); // 1 ready instance, 50 ops/s for 10 s
        cluster.scale_to(2, 10_000);
        cluster.serve(50.0, 10_000); // still 1 ready
        assert!(cluster.finish_warmups(20_000));
        cluster.serve(50.0, 10_000); // 2 ready, 25 ops/s each
        let states: Vec<InstanceState> = cluster.instances(50.0).collect();
        assert_eq!(states[0].commands_processed, 500.0 + 500.0 + 250.0);
        assert_eq!(states[1].commands_processed, 250.0);
        assert_eq!(states[1].ops_per_sec, 25.0);
    }
}
