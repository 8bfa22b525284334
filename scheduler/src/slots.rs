//! Executor task slots that cannot leak: [`SlotLedger`] wraps Ballista's
//! in-memory cluster state and gives back slots that no task holds any more.
//!
//! Ballista 55 (push-staged scheduling) takes an executor's vcores when it
//! binds a task and refunds them when the task's status comes back, looking
//! the task's vcores up in its job's execution graph. When an executor is
//! lost, the scheduler rolls back the *running* stages that read its shuffle
//! output (`reset_stages_on_lost_executor`) and cancels their tasks on the
//! surviving executors; the rolled-back stage no longer lists those tasks,
//! so their final status refunds nothing and the survivors' slots stay taken
//! for good. With one slot per executor the cluster then runs nothing at
//! all: the job stalls, and so does every job after it (issue 14's stall
//! after a late executor kill).
//!
//! The ledger knows each executor's slots (registered with it) and mirrors
//! Ballista's free count (every bind and refund goes through it). Before
//! each bind, the slots held are recounted from the running tasks of the
//! active jobs' graphs (the same `vcores_consumed` Ballista refunds), and an
//! executor whose free count plus held slots fall short of its total gets
//! the difference back, with a warning. Binds and the scheduler's own
//! refunds run on its one event loop, so between two events the count is
//! exact; a task cancelled by a rollback may still wind down on the executor
//! for a moment (the oversubscription Ballista accepts for cancelled jobs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use ballista_core::error::Result;
use ballista_core::serde::protobuf::ExecutorHeartbeat;
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_core::JobId;
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::state::task_manager::JobInfoCache;
use tokio::sync::Mutex;

use crate::affinity::{TrainingAffinity, PATIENCE};

/// One executor's slots as the ledger sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slots {
    total: u32,
    free: u32,
}

/// A [`ClusterState`] that reclaims slots no running task holds (see the
/// module docs); everything else is the wrapped state's.
pub struct SlotLedger {
    inner: Arc<dyn ClusterState>,
    slots: Mutex<HashMap<String, Slots>>,
    /// Bind the level passes' scan tasks by partition first
    /// ([`crate::affinity`]).
    training_affinity: bool,
    /// When each job with a partition waiting for its executor began to wait.
    waiting_since: std::sync::Mutex<HashMap<JobId, Instant>>,
}

impl SlotLedger {
    /// Wraps `inner` (Ballista's in-memory cluster state).
    pub fn new(inner: Arc<dyn ClusterState>, training_affinity: bool) -> Self {
        Self {
            inner,
            slots: Mutex::new(HashMap::new()),
            training_affinity,
            waiting_since: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// Slots held per executor by the running tasks of the active jobs.
async fn held_slots(active_jobs: &HashMap<JobId, JobInfoCache>) -> HashMap<String, u32> {
    let mut held: HashMap<String, u32> = HashMap::new();
    for job in active_jobs.values() {
        let graph = job.execution_graph.read().await;
        for task in graph.running_tasks() {
            let vcores = graph.task_vcores(task.stage_id, task.task_id).unwrap_or(1);
            *held.entry(task.executor_id).or_default() += vcores;
        }
    }
    held
}

/// The slots to give back per executor: `total - free - held` where positive.
fn leaked(slots: &HashMap<String, Slots>, held: &HashMap<String, u32>) -> Vec<ExecutorSlot> {
    let mut out: Vec<ExecutorSlot> = slots
        .iter()
        .filter_map(|(id, s)| {
            let h = held.get(id).copied().unwrap_or(0);
            let accounted = s.free.saturating_add(h);
            (accounted < s.total).then(|| (id.clone(), s.total - accounted))
        })
        .collect();
    out.sort();
    out
}

#[async_trait::async_trait]
impl ClusterState for SlotLedger {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        let mut slots = self.slots.lock().await;
        let held = held_slots(&active_jobs).await;
        let lost = leaked(&slots, &held);
        if !lost.is_empty() {
            for (id, n) in &lost {
                tracing::warn!(
                    executor = %id,
                    slots = n,
                    "reclaiming task slots no running task holds (tasks cancelled by a stage rollback after a lost executor)"
                );
                if let Some(s) = slots.get_mut(id) {
                    s.free += n;
                }
            }
            self.inner.unbind_tasks(lost).await?;
        }
        let (mut bound, mut others) = (Vec::new(), Arc::clone(&active_jobs));
        if self.training_affinity {
            let mut members: Vec<String> = slots.keys().cloned().collect();
            members.sort();
            let affinity = Arc::new(TrainingAffinity::new(members));
            bound = self
                .inner
                .bind_schedulable_tasks(
                    TaskDistributionPolicy::Custom(affinity.clone()),
                    Arc::clone(&active_jobs),
                    executors.clone(),
                )
                .await?;
            let waiting = affinity.waiting();
            let now = Instant::now();
            let mut since = self.waiting_since.lock().unwrap_or_else(|e| e.into_inner());
            since.retain(|job, _| waiting.contains(job));
            let patient: HashSet<&JobId> = waiting
                .iter()
                .filter(|job| {
                    now.duration_since(*since.entry((*job).clone()).or_insert(now)) < PATIENCE
                })
                .collect();
            if !patient.is_empty() {
                others = Arc::new(
                    active_jobs
                        .iter()
                        .filter(|(id, _)| !patient.contains(id))
                        .map(|(id, job)| (id.clone(), job.clone()))
                        .collect(),
                );
            }
        }
        bound.extend(
            self.inner
                .bind_schedulable_tasks(distribution, others, executors)
                .await?,
        );
        if !bound.is_empty() {
            let after = held_slots(&active_jobs).await;
            for (id, s) in slots.iter_mut() {
                let taken = after
                    .get(id)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(held.get(id).copied().unwrap_or(0));
                s.free = s.free.saturating_sub(taken);
            }
        }
        Ok(bound)
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        let mut slots = self.slots.lock().await;
        for (id, n) in &executor_slots {
            if let Some(s) = slots.get_mut(id) {
                s.free = s.free.saturating_add(*n);
            }
        }
        self.inner.unbind_tasks(executor_slots).await
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> Result<()> {
        let mut slots = self.slots.lock().await;
        let id = metadata.id.clone();
        let entry = Slots {
            total: spec.total_vcores,
            free: spec.available_vcores,
        };
        self.inner.register_executor(metadata, spec).await?;
        slots.insert(id, entry);
        Ok(())
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> Result<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> Result<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> Result<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
        let mut slots = self.slots.lock().await;
        slots.remove(executor_id);
        self.inner.remove_executor(executor_id).await
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner.executor_heartbeats()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner.get_executor_heartbeat(executor_id)
    }

    async fn cluster_state_events(&self) -> Result<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_no_task_holds_are_given_back() {
        let slots = HashMap::from([
            ("a".to_string(), Slots { total: 2, free: 0 }),
            ("b".to_string(), Slots { total: 1, free: 0 }),
            ("c".to_string(), Slots { total: 4, free: 1 }),
        ]);
        // a: one task holds one of its two slots, the other leaked;
        // b: its only slot is held; c: three held, one free.
        let held = HashMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("c".to_string(), 3),
        ]);
        assert_eq!(leaked(&slots, &held), vec![("a".to_string(), 1)]);
        // A refund that arrived before its graph update (free + held above
        // the total) gives nothing back.
        let early = HashMap::from([("b".to_string(), Slots { total: 1, free: 1 })]);
        assert!(leaked(&early, &HashMap::from([("b".to_string(), 1)])).is_empty());
        // Nothing running anywhere: every slot comes back.
        assert_eq!(
            leaked(&slots, &HashMap::new()),
            vec![
                ("a".to_string(), 2),
                ("b".to_string(), 1),
                ("c".to_string(), 3)
            ]
        );
    }
}
