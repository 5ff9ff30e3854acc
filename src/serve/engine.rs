//! The inference engine behind the server: worker threads that each hold their own copy of
//! the model and answer jobs from one queue, so that a slow image never blocks the HTTP
//! side and the number of models in memory is the number of workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use image::RgbImage;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::data::LoaderConfig;
use crate::data::class_name;
use crate::data::image_io::decode_image_rgb;
use crate::explain::{HeatMap, grad_cam, overlay, png_bytes};
use crate::infer::InferenceModel;
use crate::train::Checkpoint;
use crate::train::adjust::LogitAdjustment;
use crate::train::trainer::eval_loader_config;

/// Longest side of the heat-map picture; larger images are shown scaled down.
const OVERLAY_SIDE: u32 = 512;

/// What the server says about its model (`GET /v2/models/{name}`).
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The name requests use: the checkpoint's file stem.
    pub name: String,
    /// Canonical architecture name.
    pub arch: String,
    /// Class codes in output order.
    pub classes: Vec<String>,
    /// The classes' names spelled out.
    pub class_names: Vec<String>,
    /// Input width the model was trained at.
    pub input_width: usize,
    /// Input height the model was trained at.
    pub input_height: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Best validation balanced accuracy of its run (absent for a final fit without one).
    pub validation_balanced_accuracy: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// Shades-of-Gray norm applied before normalisation (absent: off).
    pub shades_of_gray: Option<f32>,
}

impl ModelInfo {
    fn of(name: &str, checkpoint: &Checkpoint) -> Result<Self> {
        let state = &checkpoint.state;
        let (w, h) = (state.config.width, state.config.height);
        let parameters = state.model_spec()?.cost(h, w)?.params();
        let bacc = state.best_balanced_accuracy;
        Ok(ModelInfo {
            name: name.to_string(),
            arch: state.arch.clone(),
            classes: state.classes.clone(),
            class_names: state.classes.iter().map(|c| class_name(c).into()).collect(),
            input_width: w,
            input_height: h,
            parameters,
            validation_balanced_accuracy: (bacc >= 0.0).then_some(bacc),
            epochs: state.epochs_done,
            shades_of_gray: state.config.shades_of_gray,
        })
    }
}

/// A unit of work for a worker.
pub enum Task {
    /// Decode and classify an image file's bytes (JPEG, PNG, TIFF, BMP); with `explain`,
    /// also draw the Grad-CAM of that class (`Some(None)`: the top class). Decoding happens
    /// on the worker, off the async runtime.
    Image {
        /// The file's bytes, as received.
        bytes: Vec<u8>,
        /// Which class to explain, if any.
        explain: Option<Option<usize>>,
    },
    /// Run a normalised `[n, 3, h, w]` batch, as the Open Inference Protocol sends it.
    Tensor {
        /// Row-major values.
        data: Vec<f32>,
        /// Its shape.
        shape: [usize; 4],
    },
}

/// A worker's answer.
#[derive(Debug)]
pub enum Reply {
    /// For [`Task::Image`].
    Image {
        /// Class probabilities after the model's decision rule.
        probabilities: Vec<f32>,
        /// The explained class and the heat map over the image, as PNG.
        heat_map: Option<(usize, Vec<u8>)>,
    },
    /// For [`Task::Tensor`]: flat `[n, classes]` arrays.
    Tensor {
        /// Softmax then the decision rule, as the ONNX export's `probabilities`.
        probabilities: Vec<f32>,
        /// Raw logits.
        logits: Vec<f32>,
    },
}

/// Jobs that may wait per inference worker before requests are refused as busy.
pub const QUEUE_PER_WORKER: usize = 32;

/// Why the engine did not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The queue is full.
    #[error("the server is busy ({0} requests are waiting); try again shortly")]
    Busy(usize),
    /// The workers are gone.
    #[error("the inference workers have stopped")]
    Stopped,
    /// The input is not something the model can take (an undecodable image).
    #[error("{0}")]
    BadInput(String),
    /// Inference failed on this input.
    #[error("{0}")]
    Failed(String),
}

struct Job {
    task: Task,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
}

/// The worker pool. Dropping it closes the queue; workers finish their job and stop.
pub struct Engine {
    info: ModelInfo,
    queue: Sender<Job>,
    alive: Arc<AtomicUsize>,
}

impl Engine {
    /// Starts `workers` threads, each with its own copy of the model on `device`, and
    /// returns once every one has loaded it (or the first error). At most
    /// [`QUEUE_PER_WORKER`] jobs per worker wait; more are refused as busy.
    pub fn start(
        name: &str,
        checkpoint: Checkpoint,
        workers: usize,
        device: Device,
    ) -> Result<Self> {
        Self::start_with_queue(
            name,
            checkpoint,
            workers,
            device,
            QUEUE_PER_WORKER * workers,
        )
    }

    /// As [`Engine::start`] with at most `queue` jobs waiting.
    pub fn start_with_queue(
        name: &str,
        checkpoint: Checkpoint,
        workers: usize,
        device: Device,
        queue: usize,
    ) -> Result<Self> {
        anyhow::ensure!(workers >= 1, "--workers must be at least 1");
        anyhow::ensure!(queue >= 1, "the queue must hold at least 1 job");
        let info = ModelInfo::of(name, &checkpoint)?;
        let checkpoint = Arc::new(checkpoint);
        let (queue, jobs) = bounded::<Job>(queue);
        let alive = Arc::new(AtomicUsize::new(0));
        let (loaded_tx, loaded_rx) = crossbeam_channel::bounded::<Result<()>>(workers);
        for index in 0..workers {
            let (checkpoint, jobs, alive, loaded, device) = (
                checkpoint.clone(),
                jobs.clone(),
                alive.clone(),
                loaded_tx.clone(),
                device.clone(),
            );
            std::thread::Builder::new()
                .name(format!("dermclass-infer-{index}"))
                .spawn(move || match Predictor::new(&checkpoint, device) {
                    Ok(worker) => {
                        alive.fetch_add(1, Ordering::SeqCst);
                        let _ = loaded.send(Ok(()));
                        worker.serve(jobs);
                        alive.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        let _ = loaded.send(Err(e));
                    }
                })
                .context("cannot start an inference thread")?;
        }
        for _ in 0..workers {
            loaded_rx
                .recv()
                .context("an inference thread stopped while loading")??;
        }
        Ok(Engine { info, queue, alive })
    }

    /// The model's description.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Workers able to take jobs.
    pub fn workers_alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues `task` and waits for its answer without blocking the async runtime. A full
    /// queue is refused at once, so that memory stays bounded under any load.
    pub async fn run(&self, task: Task) -> Result<Reply, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { task, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => EngineError::Busy(self.queue.capacity().unwrap_or(0)),
                TrySendError::Disconnected(_) => EngineError::Stopped,
            })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

/// A model ready to classify and explain single images as `predict` does: its weights in
/// inference mode, its input preprocessing and its decision rule.
pub struct Predictor {
    model: InferenceModel,
    device: Device,
    input: LoaderConfig,
    rule: LogitAdjustment,
}

/// Probabilities of one image and the Grad-CAM of one class.
pub struct Explanation {
    /// Class probabilities after the decision rule.
    pub probabilities: Vec<f32>,
    /// The class explained.
    pub class: usize,
    /// Its heat map.
    pub map: HeatMap,
}

impl Predictor {
    /// Loads the model to use from `checkpoint` onto `device`.
    pub fn new(checkpoint: &Checkpoint, device: Device) -> Result<Self> {
        Ok(Predictor {
            model: InferenceModel::new(checkpoint.model(&device)?, &device)?,
            device,
            input: eval_loader_config(&checkpoint.state.config),
            rule: checkpoint.state.adjustment.clone(),
        })
    }

    /// Answers jobs until the queue closes. A panic in one job answers that job with an
    /// error and leaves the worker running.
    fn serve(&self, jobs: Receiver<Job>) {
        for job in jobs {
            let answer =
                catch_unwind(AssertUnwindSafe(|| self.answer(job.task))).unwrap_or_else(|_| {
                    Err(EngineError::Failed("inference failed on this input".into()))
                });
            let _ = job.reply.send(answer);
        }
    }

    fn answer(&self, task: Task) -> Result<Reply, EngineError> {
        match task {
            Task::Image { bytes, explain } => {
                let image = decode_image_rgb(&bytes, Path::new("the request body"))
                    .map_err(|e| EngineError::BadInput(e.to_string()))?;
                Ok(self.image_reply(&image, explain))
            }
            Task::Tensor { data, shape } => {
                let x = Tensor::<4>::from_data(TensorData::new(data, shape), &self.device);
                let logits = self.model.forward(x);
                let probabilities = self.probabilities(logits.clone());
                Ok(Reply::Tensor {
                    probabilities,
                    logits: to_vec(logits),
                })
            }
        }
    }

    fn probabilities(&self, logits: Tensor<2>) -> Vec<f32> {
        let mut probs = to_vec(softmax(logits, 1));
        self.rule.apply(&mut probs);
        probs
    }

    fn input_tensor(&self, image: &RgbImage) -> Tensor<4> {
        let (w, h) = (self.input.width, self.input.height);
        let data = self.input.image_input(image);
        Tensor::<4>::from_data(TensorData::new(data, [1, 3, h, w]), &self.device)
    }

    /// Class probabilities of one decoded image (`predict --tta 1`).
    pub fn classify(&self, image: &RgbImage) -> Vec<f32> {
        self.probabilities(self.model.forward(self.input_tensor(image)))
    }

    /// The probabilities and the Grad-CAM of `class` (default: the top class).
    pub fn explain(&self, image: &RgbImage, class: Option<usize>) -> Explanation {
        let x = self.input_tensor(image);
        let probabilities = self.probabilities(self.model.forward(x.clone()));
        let class = class.unwrap_or_else(|| top_class(&probabilities));
        Explanation {
            map: grad_cam(self.model.model(), x, class),
            probabilities,
            class,
        }
    }

    fn image_reply(&self, image: &RgbImage, explain: Option<Option<usize>>) -> Reply {
        match explain {
            None => Reply::Image {
                probabilities: self.classify(image),
                heat_map: None,
            },
            Some(class) => {
                let e = self.explain(image, class);
                let png = png_bytes(&overlay(&shown(image), &e.map, 0.5));
                Reply::Image {
                    probabilities: e.probabilities,
                    heat_map: Some((e.class, png)),
                }
            }
        }
    }
}

/// The index of the largest probability.
pub fn top_class(probabilities: &[f32]) -> usize {
    probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The image scaled down to at most [`OVERLAY_SIDE`] on its long side.
fn shown(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if long <= OVERLAY_SIDE {
        return image.clone();
    }
    let scale = OVERLAY_SIDE as f64 / long as f64;
    let size = |s: u32| ((s as f64 * scale).round() as u32).max(1);
    crate::data::image_io::resize_rgb(image, size(w), size(h))
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}
