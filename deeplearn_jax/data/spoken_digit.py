"""The Free Spoken Digit Dataset (FSDD, Jakobovski et al.): WAV files -> log-mel or MFCC
frames computed in JAX -> a `data.Dataset` of padded sequences with `lengths`.

    ds = spoken_digit.load(config.data)   # data.name = "spoken_digit"

Files: <manual_dir>/spoken_digit/recordings/{digit}_{speaker}_{index}.wav, 8 kHz mono
16-bit PCM, 6 speakers x 10 digits x 50 recordings. Splits (data.split): 'official', the
dataset's own (index 0-4 of every speaker and digit is test: 300 test, 2,700 train), or
'speaker' (data.test_speaker's 500 recordings are test, the other speakers' train).
data.max_index > 0 keeps only the recordings of index < max_index (smoke runs).

Features: frames of 32 ms (256 samples) every 16 ms, Hann window, power spectrum, a
triangular mel filterbank (HTK mel scale, 0-4 kHz), log; 'mfcc' adds a DCT-II keeping the
first n_mfcc coefficients. data.clip_norm subtracts each clip's own mean per band. Then
standardised per band with the training frames' mean and std.
Every clip is padded with zero frames to the longest clip (18,262 samples: 143 frames),
so nothing is cut; `lengths` counts each clip's frames for the model's mask.
"""

import os
import re
import wave

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax.data.pipeline import ArraySplit
from deeplearn_jax.data.tfds_sources import manual_dir_from
from deeplearn_jax.data.tomita import AsBatch
from deeplearn_jax.errors import DataError

SAMPLE_RATE = 8000
FOLDER = os.path.join("spoken_digit", "recordings")
SPLITS = ("official", "speaker")
FEATURES = ("logmel", "mfcc")
_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")


def read_wav(path: str) -> np.ndarray:
  """The int16 samples of an 8 kHz mono 16-bit PCM WAV, or a DataError naming the file
  and what is wrong with it."""
  if not os.path.exists(path):
    raise DataError(f"missing WAV file {path}")
  try:
    with wave.open(path, "rb") as f:
      channels, width, rate, count = (f.getnchannels(), f.getsampwidth(), f.getframerate(),
                                      f.getnframes())
      raw = f.readframes(count)
  except (wave.Error, EOFError, OSError) as e:
    raise DataError(f"corrupt WAV file {path}: {e}") from e
  if width != 2:
    raise DataError(f"bad WAV file {path}: {8 * width}-bit samples, expected 16-bit PCM")
  if channels != 1 or rate != SAMPLE_RATE:
    raise DataError(f"bad WAV file {path}: {channels} channel(s) at {rate} Hz, expected "
                    f"mono at {SAMPLE_RATE} Hz")
  if count == 0 or len(raw) != 2 * count:
    raise DataError(f"corrupt WAV file {path}: the header says {count} samples, the file "
                    f"holds {len(raw) // 2} (truncated?)")
  return np.frombuffer(raw, "<i2")


def list_recordings(folder: str) -> list[tuple[int, str, int]]:
  """(digit, speaker, index) of every WAV in folder, sorted. Every (digit, speaker) pair
  must have indices 0..n-1 with none missing, and every speaker every digit."""
  if not os.path.isdir(folder):
    raise DataError(f"missing data folder {folder}: put the FSDD recordings "
                    "{digit}_{speaker}_{index}.wav there")
  found = []
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".wav"):
      continue
    m = _NAME.match(name)
    if m is None:
      raise DataError(f"unexpected file {os.path.join(folder, name)}: FSDD names are "
                      "{digit}_{speaker}_{index}.wav")
    found.append((int(m[1]), m[2], int(m[3])))
  if not found:
    raise DataError(f"no WAV files in {folder}")
  indices: dict[tuple[int, str], set[int]] = {}
  for d, s, i in found:
    indices.setdefault((d, s), set()).add(i)
  digits, speakers = sorted({d for d, _, _ in found}), sorted({s for _, s, _ in found})
  for d in digits:
    for s in speakers:
      have = indices.get((d, s), set())
      for i in range(max(have, default=0) + 1):
        if i not in have:
          raise DataError(f"missing WAV file {os.path.join(folder, f'{d}_{s}_{i}.wav')}")
  return sorted(found, key=lambda r: (r[1], r[0], r[2]))


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """[n_fft // 2 + 1, n_mels] triangular filters, equally spaced on the HTK mel scale
  from 0 Hz to Nyquist, each peaking at 1."""
  mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  edges = hz(np.linspace(0.0, mel(sample_rate / 2), n_mels + 2))
  freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  up, down = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
  return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


def num_frames(num_samples, frame: int, hop: int):
  """Frames that cover num_samples (the last one zero-padded), at least one."""
  return 1 + np.maximum(0, -(-(np.asarray(num_samples) - frame) // hop))


def features(waves: jax.Array, n_mels: int = 40, n_mfcc: int = 0, frame: int = 256,
             hop: int = 128) -> jax.Array:
  """Log-mel energies [n, frames, n_mels] (or n_mfcc > 0: MFCCs [n, frames, n_mfcc]) of
  waves [n, samples] (float, zero-padded; samples = hop * (frames - 1) + frame)."""
  frames = (waves.shape[1] - frame) // hop + 1
  idx = np.arange(frames)[:, None] * hop + np.arange(frame)[None, :]
  window = jnp.asarray(np.hanning(frame + 1)[:-1], waves.dtype)  # periodic Hann
  power = jnp.abs(jnp.fft.rfft(waves[:, idx] * window, n=frame)) ** 2
  log_mel = jnp.log(power @ mel_filterbank(n_mels, frame) + 1e-6)
  if n_mfcc <= 0:
    return log_mel
  return jax.scipy.fft.dct(log_mel, type=2, norm="ortho", axis=-1)[..., :n_mfcc]


def _featurize(clips: list[np.ndarray], config) -> tuple[np.ndarray, np.ndarray]:
  """(features [n, max frames, bands], frame lengths [n]) of int16 clips, computed in
  JAX in chunks so that memory stays small."""
  frame, hop = int(config.get("frame", 256)), int(config.get("hop", 128))
  lengths = num_frames([len(c) for c in clips], frame, hop)
  samples = hop * (int(lengths.max()) - 1) + frame
  fn = jax.jit(lambda w: features(w, int(config.get("n_mels", 40)),
                                  int(config.get("n_mfcc", 13))
                                  if config.get("features", "logmel") == "mfcc" else 0,
                                  frame, hop))
  out, chunk = [], 256
  for start in range(0, len(clips), chunk):
    part = clips[start:start + chunk]
    waves = np.zeros((chunk, samples), np.float32)  # a fixed shape: one compilation
    for i, c in enumerate(part):
      waves[i, :len(c)] = c / 32768.0
    out.append(np.asarray(fn(waves))[:len(part)])
  return np.concatenate(out), lengths.astype(np.int32)


_CACHE: dict[tuple, tuple] = {}


def _read_all(folder: str, config) -> tuple[list, np.ndarray, np.ndarray]:
  """(recordings, raw features, lengths) of folder, kept for the process: a sweep over
  held-out speakers (or a test module) reads and transforms the 3,000 WAVs once."""
  key = (os.path.abspath(folder), *(str(config.get(k, "")) for k in
                                    ("features", "n_mels", "n_mfcc", "frame", "hop",
                                     "max_index")))
  if key not in _CACHE:
    recordings = list_recordings(folder)
    if config.get("max_index", 0) > 0:  # a small subset: each pair's first recordings
      recordings = [r for r in recordings if r[2] < config.max_index]
    clips = [read_wav(os.path.join(folder, f"{d}_{s}_{i}.wav")) for d, s, i in recordings]
    _CACHE.clear()  # one folder's features at a time
    _CACHE[key] = (recordings, *_featurize(clips, config))
  return _CACHE[key]


def load(config: ml_collections.ConfigDict):
  """The FSDD as a data.Dataset: inputs [n, frames, bands] float32 standardised with the
  training frames' statistics (zeros past each clip's `lengths`), 10 classes."""
  from deeplearn_jax.data import Dataset  # the package imports this module
  split = config.get("split", "official")
  if split not in SPLITS:
    raise DataError(f"config.data.split must be one of {', '.join(SPLITS)}, got {split!r}")
  kind = config.get("features", "logmel")
  if kind not in FEATURES:
    raise DataError(f"config.data.features must be one of {', '.join(FEATURES)}, "
                    f"got {kind!r}")
  folder = os.path.join(manual_dir_from(config.get("manual_dir", "")), FOLDER)
  recordings, x, lengths = _read_all(folder, config)
  speakers = sorted({s for _, s, _ in recordings})
  if split == "official":
    is_test = np.array([i < 5 for _, _, i in recordings])
  else:
    held_out = config.get("test_speaker", "")
    if held_out not in speakers:
      raise DataError(f"config.data.test_speaker must be one of {', '.join(speakers)}, "
                      f"got {held_out!r}")
    is_test = np.array([s == held_out for _, s, _ in recordings])
  if is_test.all() or not is_test.any():
    raise DataError(f"the {split} split of {folder} leaves no training or no test WAVs")
  valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
  if config.get("clip_norm", False):
    # Each clip's own mean per band off (cepstral mean normalisation): a speaker's and
    # a microphone's constant colouring of the spectrum is a constant in log energy.
    clip_mean = np.where(valid[..., None], x, 0.0).sum(1) / lengths[:, None]
    x = x - clip_mean[:, None, :]
  train_frames = x[~is_test][valid[~is_test]]
  mean, std = train_frames.mean(0), train_frames.std(0) + 1e-6
  x = np.where(valid[..., None], (x - mean) / std, 0.0).astype(np.float32)
  labels = np.array([d for d, _, _ in recordings], np.int32)
  make = lambda rows: ArraySplit({"input": x[rows], "lengths": lengths[rows],
                                  "label": labels[rows]})
  return Dataset("spoken_digit", make(~is_test), make(is_test), 10, AsBatch())
