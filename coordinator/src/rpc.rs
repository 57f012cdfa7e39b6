//! The gRPC `Dispatcher` service: worker registration.

use keel_ha::LeaderEpoch;
use keel_proto::v1::dispatcher_server::Dispatcher;
use keel_proto::v1::{
    DeregisterWorkerRequest, DeregisterWorkerResponse, RegisterWorkerRequest, RegisterWorkerResponse, TaskReport,
    TaskReportAck,
};
use tonic::{Request, Response, Status};

use crate::resource_manager::{RegisterError, ResourceManager};

pub struct DispatcherService {
    pub rm: ResourceManager,
    pub jobs: crate::jobs::JobManager,
    pub id: String,
}

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let r = request.into_inner();
        match self.rm.register(&r.worker_id, &r.rpc_address, r.slots, LeaderEpoch(r.leader_epoch), &r.running) {
            Ok(epoch) => {
                self.rm.note_metrics_address(&r.worker_id, &r.metrics_address);
                Ok(Response::new(RegisterWorkerResponse {
                    epoch: epoch.0,
                    leader_id: self.id.clone(),
                    heartbeat_interval_ms: self.rm.heartbeat_interval().as_millis() as u64,
                    heartbeat_timeout_ms: self.rm.heartbeat_timeout().as_millis() as u64,
                }))
            }
            Err(e @ RegisterError::Invalid(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn deregister_worker(
        &self,
        request: Request<DeregisterWorkerRequest>,
    ) -> Result<Response<DeregisterWorkerResponse>, Status> {
        let r = request.into_inner();
        let was_registered = self.rm.deregister(&r.worker_id, LeaderEpoch(r.leader_epoch), &r.reason);
        Ok(Response::new(DeregisterWorkerResponse { was_registered }))
    }

    async fn report_task(&self, request: Request<TaskReport>) -> Result<Response<TaskReportAck>, Status> {
        self.jobs.report(request.into_inner())?;
        Ok(Response::new(TaskReportAck {}))
    }
}
