//! The demo's HTTP routes (axum):
//!
//! * `GET /`: the page (an embedded asset);
//! * `GET /api/config`: the limits and defaults of the settings, the examples, the upload limit;
//! * `POST /api/runs` (multipart): `example` (an id) or `video` (a file), `question`,
//!   `question_type`, `options` (one per line), `answer`, and settings fields
//!   ([`super::settings`]) -> `202 {"run_id", "position", "events"}`; `400` for a bad form or a
//!   file that is not a video, `404` for an unknown example, `413` for an upload over the limit,
//!   `503 {"error": "busy"}` when the queue is full;
//! * `GET /api/runs/{id}/events`: the run's server-sent events (once per run; closing it cancels
//!   the run). A run whose stream is not opened within the attach timeout is cancelled.
//!
//! Every error is `{"error": CODE, "message": TEXT}`. Nothing reads a file a request names:
//! examples are ids, uploads get generated names, media travels inside events. Left out: serving
//! finished runs again (the page keeps the trajectory it was sent).

use super::examples::{ExampleError, Examples};
use super::queue::{Job, Queue, RunEvent};
use super::settings::{Limits, RunSettings};
use super::uploads::{Upload, UploadDir, check_video, token};
use crate::run::single::Question;
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;

const PAGE: &str = include_str!("page.html");
/// Longest text field of the form.
const MAX_FIELD_BYTES: usize = 64 << 10;

/// A created run's event stream and cancel flag, until its page opens the stream.
type Unopened = (UnboundedReceiver<RunEvent>, Arc<AtomicBool>);

/// What the routes share.
pub struct App {
    pub queue: Arc<Queue>,
    pub uploads: Arc<UploadDir>,
    pub examples: Examples,
    pub limits: Limits,
    pub max_upload_bytes: u64,
    pub attach_timeout: Duration,
    pub model: String,
    /// Event streams of created runs, until their page opens them.
    streams: Mutex<HashMap<String, Unopened>>,
    counter: AtomicU64,
}

impl App {
    pub fn new(queue: Arc<Queue>, uploads: Arc<UploadDir>, examples: Examples, limits: Limits) -> App {
        App {
            queue,
            uploads,
            examples,
            limits,
            max_upload_bytes: 512 << 20,
            attach_timeout: Duration::from_secs(30),
            model: String::new(),
            streams: Mutex::default(),
            counter: AtomicU64::new(0),
        }
    }

    /// Forgets every unopened stream (at shutdown).
    pub fn close_streams(&self) {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// The router over `app`.
pub fn router(app: Arc<App>) -> Router {
    // Room for the form fields and for draining an upload up to twice the limit, so an oversized
    // upload is answered with 413 rather than a reset connection.
    let body_limit =
        usize::try_from(app.max_upload_bytes.saturating_mul(2)).unwrap_or(usize::MAX).saturating_add(1 << 20);
    Router::new()
        .route("/", get(page))
        .route("/api/config", get(config))
        .route("/api/runs", post(create_run).layer(DefaultBodyLimit::max(body_limit)))
        .route("/api/runs/{id}/events", get(events))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such page or API route") })
        .with_state(app)
}

/// A JSON error answer.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn page() -> Response {
    let mut r = Html(PAGE).into_response();
    let csp = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
               style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self' blob:";
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn config(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "model": app.model,
        "limits": app.limits,
        "defaults": RunSettings::defaults(&app.limits),
        "examples": app.examples.list(),
        "max_upload_bytes": app.max_upload_bytes,
        "queue_bound": app.queue.bound,
        "waiting": app.queue.waiting(),
    }))
    .into_response()
}

/// The fields of a run form.
struct Form {
    example: Option<String>,
    question: String,
    question_type: String,
    options: String,
    answer: String,
    settings: RunSettings,
    upload: Option<Upload>,
}

/// Stores an uploaded file under a generated name, at most `limit` bytes. Over the limit, the
/// rest of the body is read and dropped (up to the route's body limit) and the answer is 413.
async fn store_upload(app: &App, mut field: Field<'_>) -> Result<Option<Upload>, Response> {
    let upload = app.uploads.new_file(field.file_name());
    let io = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, "io", &format!("storing the upload: {e}"));
    let mut file = tokio::fs::File::create(&upload.path).await.map_err(io)?;
    let (mut size, mut over) = (0u64, false);
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(app, &e)),
        };
        size += chunk.len() as u64;
        over |= size > app.max_upload_bytes;
        if !over {
            file.write_all(&chunk).await.map_err(io)?;
        }
    }
    file.flush().await.map_err(io)?;
    if over {
        return Err(too_large(app));
    }
    Ok((size > 0).then_some(upload))
}

fn too_large(app: &App) -> Response {
    let mib = app.max_upload_bytes as f64 / (1u64 << 20) as f64;
    error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &format!("the upload is larger than the limit of {mib} MiB"))
}

fn multipart_error(app: &App, e: &axum::extract::multipart::MultipartError) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(app);
    }
    error(StatusCode::BAD_REQUEST, "bad_form", &format!("the form could not be read: {}", e.body_text()))
}

/// Reads the multipart form.
async fn read_form(app: &App, mut mp: Multipart) -> Result<Form, Response> {
    let mut f = Form {
        example: None,
        question: String::new(),
        question_type: String::new(),
        options: String::new(),
        answer: String::new(),
        settings: RunSettings::defaults(&app.limits),
        upload: None,
    };
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "bad_form", &m);
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(app, &e))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "video" {
            f.upload = store_upload(app, field).await?;
            continue;
        }
        let text = field.text().await.map_err(|e| multipart_error(app, &e))?;
        if text.len() > MAX_FIELD_BYTES {
            return Err(bad(format!("field `{name}` is longer than {MAX_FIELD_BYTES} bytes")));
        }
        match name.as_str() {
            "example" => f.example = Some(text).filter(|t| !t.trim().is_empty()),
            "question" => f.question = text,
            "question_type" => f.question_type = text,
            "options" => f.options = text,
            "answer" => f.answer = text,
            key => f.settings.set(&app.limits, key, &text).map_err(bad)?,
        }
    }
    Ok(f)
}

/// The question of a form: the upload or the example's video, the form's text (the example's
/// where the form leaves it empty).
async fn question_of(app: &App, f: &Form) -> Result<Question, Response> {
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "bad_form", m);
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let options: Vec<String> = f.options.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let (video, example) = match (&f.upload, &f.example) {
        (Some(_), Some(_)) => return Err(bad("choose an example or upload a video, not both")),
        (None, None) => return Err(bad("choose an example or upload a video")),
        (Some(u), None) => {
            let path = u.path.clone();
            let checked = tokio::task::spawn_blocking(move || check_video(&path)).await;
            match checked {
                Ok(Ok(())) => (u.path.clone(), None),
                Ok(Err(why)) => return Err(error(StatusCode::BAD_REQUEST, "not_a_video", &why)),
                Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "io", &e.to_string())),
            }
        }
        (None, Some(id)) => match app.examples.get(id.trim()) {
            Ok(ex) => (ex.video.clone(), Some(ex)),
            Err(e @ ExampleError::Malformed(_)) => return Err(bad(&e.to_string())),
            Err(e @ ExampleError::Unknown(_)) => {
                return Err(error(StatusCode::NOT_FOUND, "no_example", &e.to_string()));
            }
        },
    };
    let question = some(&f.question).or_else(|| example.map(|e| e.question.clone()));
    let Some(question) = question else { return Err(bad("the question is empty")) };
    let from_example = f.question.trim().is_empty();
    Ok(Question {
        video,
        question,
        options: if options.is_empty() && from_example {
            example.map(|e| e.options.clone()).unwrap_or_default()
        } else {
            options
        },
        question_type: some(&f.question_type)
            .or_else(|| example.filter(|_| from_example).map(|e| e.question_type.clone())),
        answer: some(&f.answer).or_else(|| example.filter(|_| from_example).map(|e| e.answer.clone())),
    })
}

async fn create_run(State(app): State<Arc<App>>, mp: Multipart) -> Response {
    let mut form = match read_form(&app, mp).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let question = match question_of(&app, &form).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    let id = token(app.counter.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = Job {
        id: id.clone(),
        question,
        settings: form.settings.clone(),
        upload: form.upload.take(),
        events: tx,
        cancel: cancel.clone(),
    };
    let position = match app.queue.submit(job) {
        Ok(p) => p,
        Err(busy) => {
            let msg = format!("the demo is busy: {} run(s) already wait; try again in a moment", busy.waiting);
            return error(StatusCode::SERVICE_UNAVAILABLE, "busy", &msg);
        }
    };
    app.streams.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), (rx, cancel));
    let (later, rid) = (app.clone(), id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(later.attach_timeout).await;
        let left = later.streams.lock().unwrap_or_else(PoisonError::into_inner).remove(&rid);
        if let Some((_, cancel)) = left {
            cancel.store(true, Ordering::SeqCst);
            later.queue.cancelled();
        }
    });
    let events = format!("/api/runs/{id}/events");
    (StatusCode::ACCEPTED, Json(json!({"run_id": id, "position": position, "events": events}))).into_response()
}

/// Cancels its run when the event stream is dropped (the page closed or went away).
struct CancelOnDrop {
    cancel: Arc<AtomicBool>,
    queue: Arc<Queue>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.queue.cancelled();
    }
}

async fn events(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    let taken = app.streams.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    let Some((rx, cancel)) = taken else {
        return error(StatusCode::NOT_FOUND, "no_run", "no such run, or its events are already being streamed");
    };
    let guard = CancelOnDrop { cancel, queue: app.queue.clone() };
    let stream = UnboundedReceiverStream::new(rx).map(move |ev| {
        let _held = &guard;
        Ok::<Event, Infallible>(Event::default().event(ev.name).data(ev.data.to_string()))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(1))).into_response()
}
