//! Draining: once this process starts handing its sockets to a new one (graceful upgrade)
//! or shutting down, it stops keeping connections alive, so clients move to fresh
//! connections (which the new process accepts) instead of sending requests on a connection
//! that is about to be dropped.

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Raises the shared draining flag when Pingora's execution phase says so.
pub struct DrainWatcher {
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    draining: Arc<AtomicBool>,
}

impl DrainWatcher {
    /// A watcher over `phases` (from `Server::watch_execution_phase`) raising `draining`.
    pub fn new(phases: broadcast::Receiver<ExecutionPhase>, draining: Arc<AtomicBool>) -> Self {
        DrainWatcher {
            phases: Mutex::new(Some(phases)),
            draining,
        }
    }
}

fn drains(phase: &ExecutionPhase) -> bool {
    matches!(
        phase,
        ExecutionPhase::GracefulUpgradeTransferringFds
            | ExecutionPhase::GracefulUpgradeCloseTimeout
            | ExecutionPhase::GracefulTerminate
            | ExecutionPhase::ShutdownStarted
            | ExecutionPhase::ShutdownGracePeriod
    )
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.draining.store(true, Ordering::Relaxed);
                    return;
                }
                phase = phases.recv() => match phase {
                    Ok(p) if drains(&p) => {
                        if !self.draining.swap(true, Ordering::Relaxed) {
                            tracing::info!(phase = ?p, "draining: connections are no longer kept alive");
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
