//! The list routes' shared shape: `limit` and `cursor` in, `{"object":"list",…}` out, with the
//! cursor bound to the merchant and the list (see `cursor`).

use super::cursor::CursorCodec;
use super::request::{path_id, Query};
use super::{ApiError, ApiResponse};
use crate::app::App;
use crate::domain::{MerchantId, ParseError, PaymentId};
use crate::store::{Page, StoreError};
use lambda_http::Request;
use serde_json::Value;
use std::future::Future;

/// Where a list request starts: its page size and, from a verified cursor, what to continue
/// after.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: usize,
    after: Option<String>,
}

impl PageRequest {
    /// Reads `limit` and `cursor` from `query`; the cursor must have been issued for
    /// `merchant` and `list`.
    pub fn parse(
        query: &Query,
        cursors: &CursorCodec,
        merchant: &MerchantId,
        list: &str,
    ) -> Result<Self, ApiError> {
        let limit = query.limit()?;
        let after = query
            .get("cursor")
            .map(|cursor| cursors.open(cursor, merchant, list))
            .transpose()?;
        Ok(Self { limit, after })
    }

    /// The position to continue after as a sequence number (refunds and events).
    pub fn after_sequence(&self) -> Result<Option<u64>, ApiError> {
        self.after(|position| {
            position
                .parse::<u64>()
                .map_err(|_| ParseError::new("not a sequence number"))
        })
    }

    /// The position to continue after, as the id type of the list.
    pub fn after<T>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ApiError> {
        self.after
            .as_deref()
            .map(|position| parse(position).map_err(|_| ApiError::InvalidCursor))
            .transpose()
    }
}

/// The most JSON a list response's `data` may carry. A Lambda response may not exceed 6 MB, and
/// its body travels JSON-escaped inside the API Gateway envelope (which can at most double it:
/// every `"` and `\` gains a backslash), while a payment with metadata at its limits is 50–300
/// KB: a hundred of them could pass 6 MB, and the caller would get a 502 instead of the page. A
/// page that would outgrow this ends early, with `has_more` and a cursor that continues after
/// its last item (a page may always hold fewer than `limit`).
pub const PAGE_BODY_BUDGET: usize = 2 * 1024 * 1024;

/// The response for `page`, with a cursor for the next one when there is one.
pub fn page_response<T>(
    page: Page<T>,
    resource: impl Fn(&T) -> Value,
    cursors: &CursorCodec,
    merchant: &MerchantId,
    list: &str,
) -> ApiResponse {
    let mut data = Vec::with_capacity(page.items.len());
    let mut size = 0;
    let mut continue_after = page.continue_after().map(str::to_owned);
    for (index, item) in page.items.iter().enumerate() {
        let value = resource(item);
        let len = json_len(&value);
        if index > 0 && size + len > PAGE_BODY_BUDGET {
            continue_after = Some(page.positions[index - 1].clone());
            break;
        }
        size += len;
        data.push(value);
    }
    let next_cursor = continue_after.map(|position| cursors.issue(merchant, list, &position));
    ApiResponse::list(data, next_cursor)
}

/// The length of `value` as compact JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that cannot fail does not fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The lists under one payment (`/payments/{id}/refunds`, `/payments/{id}/events`): the payment
/// must be the merchant's own (404 otherwise), the cursor is bound to this payment's `kind`
/// list, and `fetch` reads one page after a position.
pub async fn list_under_payment<T, F, Fut>(
    app: &App,
    req: &Request,
    merchant: &MerchantId,
    kind: &str,
    fetch: F,
    resource: fn(&T) -> Value,
) -> Result<ApiResponse, ApiError>
where
    F: FnOnce(PaymentId, usize, Option<u64>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let id = path_id(req, PaymentId::parse)?;
    let query = Query::parse(req, &["limit", "cursor"])?;
    let list = format!("{kind}:{id}");
    let cursors = app.cursor_codec().await?;
    let page_request = PageRequest::parse(&query, cursors, merchant, &list)?;
    let after = page_request.after_sequence()?;
    app.store
        .get_payment(merchant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let page = fetch(id, page_request.limit, after).await?;
    Ok(page_response(page, resource, cursors, merchant, &list))
}
