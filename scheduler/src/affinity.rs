//! Training affinity: the tasks of a distributed-training pass go to the
//! same executor for the same partition, pass after pass.
//!
//! A training job's executors keep the binned batches they scanned
//! (`sluice_ml::distributed::resident`), and a later pass reads only labels
//! and row ids; a batch whose task lands on another executor than before is
//! missed there and the whole pass runs again in full. Ballista 55 places a
//! stage's tasks on whichever executor has a free slot first, so the same
//! partition moves between executors from one pass (one job) to the next.
//!
//! [`TrainingAffinity`] binds the scan stages of the level passes (a stage
//! that reads no shuffle output and whose plan calls
//! `sluice_level_histograms`) itself: partition `p` goes to the `p mod n`-th
//! of the `n` registered executors, sorted by id, when that executor has a
//! free slot; otherwise it waits for one there rather than go to an
//! executor that would miss its batches: its job is kept from Ballista's
//! own distribution, which [`crate::slots::SlotLedger`] runs next for every
//! other stage, for up to [`PATIENCE`] (then a free executor takes the
//! task, and the pass runs again in full if it misses). When the executors change (one lost, one
//! added), partitions map to other executors; their first pass misses
//! there and refills them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ballista_core::serde::protobuf::{job_status, AvailableVcores};
use ballista_core::serde::scheduler::TaskKey;
use ballista_core::JobId;
use ballista_scheduler::cluster::{BoundTask, DistributionPolicy};
use ballista_scheduler::state::execution_graph::{create_task_info, TaskDescription};
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::ExecutionPlan;

/// How long a job's pass waits for the executors holding its partitions
/// before any free executor may take them (an owner busy with another
/// job's long task, or dead and not yet expired).
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// The aggregate whose scan stages are pinned.
const LEVEL_PASS: &str = "sluice_level_histograms";

/// Whether `plan` is a level pass's scan stage: it calls the level-pass
/// aggregate, reads no other stage's output (its partitions are the
/// scanned files'), and every partition runs as its own task (no operator
/// on the way down from the root collapses its input to one partition).
pub fn is_training_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    fn reads_shuffle(node: &Arc<dyn ExecutionPlan>) -> bool {
        node.name().contains("ShuffleReader") || node.children().into_iter().any(reads_shuffle)
    }
    fn collapses(node: &Arc<dyn ExecutionPlan>) -> bool {
        node.properties().output_partitioning().partition_count() == 1
            || matches!(node.children().as_slice(), [child] if collapses(child))
    }
    fn calls_level_pass(node: &Arc<dyn ExecutionPlan>) -> bool {
        node.downcast_ref::<AggregateExec>()
            .is_some_and(|a| a.aggr_expr().iter().any(|e| e.fun().name() == LEVEL_PASS))
            || node.children().into_iter().any(calls_level_pass)
    }
    let collapse = matches!(plan.children().as_slice(), [child] if collapses(child));
    !collapse && !reads_shuffle(plan) && calls_level_pass(plan)
}

/// The executor partition `p` belongs to: `p mod n` of the sorted ids.
pub fn owner(members: &[String], partition: usize) -> Option<&str> {
    (!members.is_empty()).then(|| members[partition % members.len()].as_str())
}

/// Binds the level passes' scan stages by partition (module docs).
#[derive(Debug)]
pub struct TrainingAffinity {
    /// The registered executors, sorted (the ledger's).
    pub members: Vec<String>,
    /// Jobs with a partition left waiting for its executor (out).
    pub waiting: Mutex<HashSet<JobId>>,
}

#[async_trait::async_trait]
impl DistributionPolicy for TrainingAffinity {
    async fn bind_tasks(
        &self,
        mut budgets: Vec<&mut AvailableVcores>,
        running_jobs: Arc<HashMap<JobId, JobInfoCache>>,
    ) -> datafusion::error::Result<Vec<BoundTask>> {
        let mut bound = Vec::new();
        if self.members.is_empty() {
            return Ok(bound);
        }
        for (job_id, job) in running_jobs.iter() {
            if !matches!(job.status, Some(job_status::Status::Running(_))) {
                continue;
            }
            let mut graph = job.execution_graph.write().await;
            let session_id = graph.session_id().to_string();
            let mut seen = Vec::new();
            while let Some(stage) = graph.fetch_running_stage(&seen) {
                seen.push(stage.stage_id);
                if !is_training_scan(&stage.plan) {
                    continue;
                }
                let mut wait = Vec::new();
                for p in stage.pending.next_slice(usize::MAX) {
                    // Ballista passes only the executors with free slots
                    // that this bind may use.
                    let free = owner(&self.members, p).and_then(|e| {
                        budgets
                            .iter_mut()
                            .find(|b| b.executor_id == e && b.vcores > 0)
                    });
                    let Some(budget) = free else {
                        wait.push(p);
                        continue;
                    };
                    budget.vcores -= 1;
                    let task_id = stage.task_infos.len();
                    let mut info = create_task_info(budget.executor_id.clone(), task_id);
                    info.global_input_partition_ids = vec![p];
                    info.vcores_consumed = 1;
                    stage.task_infos.push(info);
                    bound.push((
                        budget.executor_id.clone(),
                        TaskDescription {
                            session_id: session_id.clone(),
                            key: TaskKey {
                                job_id: job_id.clone(),
                                stage_id: stage.stage_id,
                                task_id,
                            },
                            stage_attempt_num: stage.stage_attempt_num,
                            task_attempt: stage.task_failure_numbers[p],
                            global_input_partition_ids: vec![p],
                            vcores_consumed: 1,
                            plan: stage.plan.clone(),
                            session_config: stage.session_config.clone(),
                        },
                    ));
                }
                if !wait.is_empty() {
                    self.waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(job_id.clone());
                }
                stage.pending.reschedule(wait);
            }
        }
        Ok(bound)
    }

    fn name(&self) -> &str {
        "sluice-training-affinity"
    }
}

impl TrainingAffinity {
    /// The policy for one bind over `members` (sorted).
    pub fn new(members: Vec<String>) -> Self {
        Self {
            members,
            waiting: Mutex::new(HashSet::new()),
        }
    }

    /// The jobs with a partition left waiting for its executor.
    pub fn waiting(&self) -> HashSet<JobId> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The physical plan of `sql` over a 2-partition table `t(label, row_id)`.
    async fn plan(sql: &str) -> Arc<dyn ExecutionPlan> {
        use datafusion::arrow::array::{Int64Array, RecordBatch, UInt8Array};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;
        use datafusion::prelude::{SessionConfig, SessionContext};
        let schema = Arc::new(Schema::new(vec![
            Field::new("label", DataType::UInt8, false),
            Field::new("row_id", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt8Array::from(vec![0, 1])),
                Arc::new(Int64Array::from(vec![0, 1])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        sluice_core::session::register_sluice_functions(&ctx);
        let table = MemTable::try_new(schema, vec![vec![batch.clone()], vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    /// The first node (depth first) named `name`.
    fn find(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Option<Arc<dyn ExecutionPlan>> {
        if plan.name() == name {
            return Some(plan.clone());
        }
        plan.children().into_iter().find_map(|c| find(c, name))
    }

    #[tokio::test]
    async fn only_a_level_pass_scan_is_pinned() {
        let pass = plan("SELECT sluice_level_histograms('{}', label, row_id) FROM t").await;
        // The whole plan ends in one partition (the final aggregate's
        // stage); its partial aggregate over the scan is the pinned stage.
        assert!(!is_training_scan(&pass));
        let partial = find(&pass, "AggregateExec")
            .and_then(|a| a.children().first().map(|c| (*c).clone()))
            .and_then(|c| find(&c, "AggregateExec"))
            .expect("a partial aggregate");
        assert!(is_training_scan(&partial));
        let other = plan("SELECT sum(row_id) FROM t").await;
        let other_partial = find(&other, "AggregateExec")
            .and_then(|a| a.children().first().map(|c| (*c).clone()))
            .and_then(|c| find(&c, "AggregateExec"))
            .expect("a partial aggregate");
        assert!(!is_training_scan(&other_partial));
    }

    #[test]
    fn partitions_spread_over_sorted_executors() {
        let members = vec!["a".to_string(), "b".to_string()];
        let owners: Vec<_> = (0..5).map(|p| owner(&members, p).unwrap()).collect();
        assert_eq!(owners, ["a", "b", "a", "b", "a"]);
        assert_eq!(owner(&[], 0), None);
    }
}
