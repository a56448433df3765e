//! Faults at the processor boundary, the way the store's are injected between the real client
//! and the real server (`faults`): [`FaultyProcessor`] wraps the real sandbox and, for the calls
//! told to, either fails before the sandbox sees the call (nothing moved) or lets the sandbox
//! act and then loses its answer (the hardest case: the money moved, we cannot know). It
//! records every call with the key it carried (the reference, or our refund id), so a test can
//! show that retries ask with the same key.

use crate::domain::{Amount, Authorization, RefundStatus};
use crate::processor::{
    AuthorizationRequest, Held, Lookup, PaymentProcessor, ProcessorError, RefundCall,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A money-moving call of the processor trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Capture,
    Cancel,
    Refund,
    Held,
}

/// What happens to the next calls of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorFault {
    /// The call never reaches the sandbox (`Unavailable`: nothing done).
    BeforeActing,
    /// The sandbox acts; its answer is lost (`Unknown`).
    AfterActing,
}

/// The sandbox behind injected faults (see the module docs).
pub struct FaultyProcessor {
    inner: Arc<dyn PaymentProcessor>,
    faults: Mutex<HashMap<Call, (ProcessorFault, u32)>>,
    calls: Mutex<Vec<(Call, String)>>,
}

impl FaultyProcessor {
    pub fn new(inner: Arc<dyn PaymentProcessor>) -> Self {
        Self {
            inner,
            faults: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// The next `times` calls of `call` meet `fault`.
    pub fn inject(&self, call: Call, fault: ProcessorFault, times: u32) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, (fault, times));
    }

    /// Every call of `call` so far, by the key it carried, oldest first.
    pub fn keys(&self, call: Call) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Records the call and says which fault, if any, it meets.
    fn take(&self, call: Call, key: &str) -> Option<ProcessorFault> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((call, key.to_owned()));
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let (fault, left) = faults.get_mut(&call)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        Some(*fault)
    }

    /// Runs `act` through the fault the call meets.
    async fn through<T, F>(&self, call: Call, key: &str, act: F) -> Result<T, ProcessorError>
    where
        F: std::future::Future<Output = Result<T, ProcessorError>>,
    {
        match self.take(call, key) {
            None => act.await,
            Some(ProcessorFault::BeforeActing) => Err(ProcessorError::Unavailable(format!(
                "injected: {call:?} not sent"
            ))),
            Some(ProcessorFault::AfterActing) => {
                let _acted = act.await;
                Err(ProcessorError::Unknown(format!(
                    "injected: {call:?} sent, answer lost"
                )))
            }
        }
    }
}

#[async_trait]
impl PaymentProcessor for FaultyProcessor {
    fn name(&self) -> crate::domain::ProcessorName {
        self.inner.name()
    }

    fn creates_references(&self) -> bool {
        self.inner.creates_references()
    }

    async fn prepare(&self, request: &AuthorizationRequest) -> Result<String, ProcessorError> {
        self.inner.prepare(request).await
    }

    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        reference: &str,
    ) -> Result<Authorization, ProcessorError> {
        self.inner.authorize(request, reference).await
    }

    async fn lookup(&self, reference: &str) -> Result<Lookup, ProcessorError> {
        self.inner.lookup(reference).await
    }

    async fn capture(&self, reference: &str, amount: Amount) -> Result<(), ProcessorError> {
        self.through(
            Call::Capture,
            reference,
            self.inner.capture(reference, amount),
        )
        .await
    }

    async fn cancel(&self, reference: &str) -> Result<(), ProcessorError> {
        self.through(Call::Cancel, reference, self.inner.cancel(reference))
            .await
    }

    async fn refund(&self, call: &RefundCall) -> Result<RefundStatus, ProcessorError> {
        self.through(Call::Refund, call.refund.as_str(), self.inner.refund(call))
            .await
    }

    async fn held(&self, reference: &str) -> Result<Held, ProcessorError> {
        self.through(Call::Held, reference, self.inner.held(reference))
            .await
    }
}

impl super::TestApp {
    /// Puts a [`FaultyProcessor`] around the app's sandbox and answers it.
    pub fn with_processor_faults(&mut self) -> Arc<FaultyProcessor> {
        let faulty = Arc::new(FaultyProcessor::new(self.sandbox.clone()));
        self.app.processor = faulty.clone();
        faulty
    }
}
