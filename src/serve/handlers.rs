//! The HTTP handlers: each checks its request, hands the work to the engine, and answers in
//! JSON; every failure is an [`ApiError`] with a status and a message.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::engine::{EngineError, Reply, Task, top_class};
use super::protocol::{INPUT, InferResponse, OUTPUTS, ResponseOutput, parse_infer};
use crate::data::{class_index, class_name};

const PAGE: &str = include_str!("page.html");

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub(crate) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.engine.workers_alive() > 0;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

pub(crate) async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "dermclass",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// The model's metadata, in the protocol's form plus what the model card says.
pub(crate) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Answer<serde_json::Value> {
    let info = known_model(&state, &name)?;
    let classes = info.classes.len();
    Ok(Json(json!({
        "name": info.name,
        "versions": ["1"],
        "platform": "dermclass",
        "inputs": [{
            "name": INPUT,
            "datatype": "FP32",
            "shape": [-1, 3, info.input_height, info.input_width],
        }],
        "outputs": OUTPUTS.map(|name| json!({
            "name": name, "datatype": "FP32", "shape": [-1, classes],
        })),
        "dermclass": info,
        "preprocessing": "resize to the input size (bilinear), Shades-of-Gray colour constancy \
            when `shades_of_gray` is set, normalise as in training; POST /predict does this",
    })))
}

pub(crate) async fn model_ready(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    known_model(&state, &name)?;
    Ok(ready(State(state)).await)
}

fn known_model<'a>(state: &'a AppState, name: &str) -> Result<&'a super::ModelInfo, ApiError> {
    let info = state.engine.info();
    if name != info.name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown model `{name}`; this server serves `{}`", info.name),
        ));
    }
    Ok(info)
}

/// `POST /v2/models/{name}/infer`: a JSON tensor in, the chosen outputs back.
pub(crate) async fn infer(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    request: Request,
) -> Answer<InferResponse> {
    // The body is read before anything is checked, so that a client still sending it gets
    // the error answer rather than a closed connection.
    let body = body_bytes(request).await?;
    let info = known_model(&state, &name)?;
    let request =
        parse_infer(&body, info.input_width, info.input_height).map_err(ApiError::bad_request)?;
    let [n, ..] = request.shape;
    let reply = run(
        &state,
        Task::Tensor {
            data: request.data,
            shape: request.shape,
        },
    )
    .await?;
    let Reply::Tensor {
        probabilities,
        logits,
    } = reply
    else {
        return Err(internal("the engine answered a tensor with an image"));
    };
    let classes = info.classes.len();
    let outputs = request
        .outputs
        .into_iter()
        .map(|name| ResponseOutput {
            name,
            shape: [n, classes],
            datatype: "FP32",
            data: if name == "logits" {
                logits.clone()
            } else {
                probabilities.clone()
            },
        })
        .collect();
    Ok(Json(InferResponse {
        model_name: info.name.clone(),
        id: request.id,
        outputs,
    }))
}

/// One class's probability, with its name spelled out.
#[derive(Serialize)]
pub(crate) struct ClassProbability {
    class: String,
    name: String,
    probability: f32,
}

/// The answer of `/predict` and `/explain`.
#[derive(Serialize)]
pub(crate) struct Prediction {
    model: String,
    top_class: String,
    top_class_name: String,
    top_probability: f32,
    probabilities: Vec<ClassProbability>,
    milliseconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    explained_class: Option<String>,
    /// The Grad-CAM of `explained_class` over the image, PNG in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    heat_map_png_base64: Option<String>,
}

/// `POST /predict`: a JPEG/PNG body (raw or multipart) in, the class probabilities out.
pub(crate) async fn predict(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Answer<Prediction> {
    let bytes = image_bytes(request).await?;
    classify(&state, bytes, None).await
}

#[derive(Deserialize)]
pub(crate) struct ExplainQuery {
    class: Option<String>,
}

/// `POST /explain[?class=MEL]`: `/predict`'s answer plus the Grad-CAM heat map of the top
/// class, or of the class asked for.
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Answer<Prediction> {
    let uri = request.uri().clone();
    let bytes = image_bytes(request).await?;
    let class = explain_class(&state, &uri)?;
    classify(&state, bytes, Some(class)).await
}

fn explain_class(state: &AppState, uri: &Uri) -> Result<Option<usize>, ApiError> {
    let query = Query::<ExplainQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let Some(code) = query.0.class else {
        return Ok(None);
    };
    class_index(&state.engine.info().classes, &code)
        .map(Some)
        .map_err(ApiError::bad_request)
}

async fn classify(
    state: &AppState,
    bytes: Bytes,
    explain: Option<Option<usize>>,
) -> Answer<Prediction> {
    let started = Instant::now();
    let task = Task::Image {
        bytes: bytes.to_vec(),
        explain,
    };
    let reply = run(state, task).await?;
    let Reply::Image {
        probabilities,
        heat_map,
    } = reply
    else {
        return Err(internal("the engine answered an image with a tensor"));
    };
    let info = state.engine.info();
    let top = top_class(&probabilities);
    let code = |i: usize| info.classes[i].clone();
    Ok(Json(Prediction {
        model: info.name.clone(),
        top_class: code(top),
        top_class_name: class_name(&info.classes[top]).to_string(),
        top_probability: probabilities[top],
        probabilities: probabilities
            .iter()
            .enumerate()
            .map(|(i, &p)| ClassProbability {
                class: code(i),
                name: class_name(&info.classes[i]).to_string(),
                probability: p,
            })
            .collect(),
        milliseconds: started.elapsed().as_secs_f64() * 1e3,
        explained_class: heat_map.as_ref().map(|(c, _)| code(*c)),
        heat_map_png_base64: heat_map
            .map(|(_, png)| base64::engine::general_purpose::STANDARD.encode(png)),
    }))
}

async fn run(state: &AppState, task: Task) -> Result<Reply, ApiError> {
    state.engine.run(task).await.map_err(|e| match e {
        EngineError::Busy(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        EngineError::BadInput(message) => ApiError::bad_request(message),
        _ => internal(e.to_string()),
    })
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The whole body, within the size limit.
async fn body_bytes(request: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), body_error(e.status(), &e.body_text())))
}

fn body_error(status: StatusCode, text: &str) -> String {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return format!("the request body is larger than the server's limit ({text})");
    }
    format!("cannot read the request body: {text}")
}

/// The image of a raw body, or of the first file field of a multipart form.
async fn image_bytes(request: Request) -> Result<Bytes, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return body_bytes(request).await;
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let read_error = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), body_error(e.status(), &e.body_text()))
    };
    while let Some(field) = form.next_field().await.map_err(read_error)? {
        if field.file_name().is_some() || matches!(field.name(), Some("image" | "file")) {
            return field.bytes().await.map_err(read_error);
        }
    }
    Err(ApiError::bad_request(
        "the multipart form has no file field (send the image as a field named `image`)",
    ))
}

/// Answers a request that takes longer than the configured limit with 503.
pub(crate) async fn time_limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {:.1} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}; see GET / , POST /predict, POST /explain, /v2/...",
            uri.path()
        ),
    )
}

pub(crate) async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}
