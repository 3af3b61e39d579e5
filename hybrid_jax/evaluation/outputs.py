"""Writing results: the JSON with stable keys, the official text files, the printed table."""

from __future__ import annotations

import json
import os

import numpy as np

from hybrid_jax import errors


def _plain(obj):
  if isinstance(obj, dict):
    return {str(k): _plain(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_plain(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _plain(obj.tolist())
  if isinstance(obj, np.integer):
    return int(obj)
  if isinstance(obj, np.floating):
    return float(obj)
  return obj


def write_json(results: dict, path: str) -> None:
  """Writes every number at full precision (json floats are repr-exact)."""
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
      json.dump(_plain(results), f, indent=1, sort_keys=False)
  except OSError as exc:
    raise errors.WorkdirError(f'Cannot write {path}: {exc}') from exc


def vpq_text(window: dict) -> str:
  """One vpq-<k>.txt: All/Things/Stuff PQ SQ RQ N, then per class PQ SQ RQ IoU TP FP FN."""
  lines = ['=' * 48, f'{"":10s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s} {"N":>5s}', '-' * 38]
  for name, key in (('All', 'all'), ('Things', 'things'), ('Stuff', 'stuff')):
    g = window[key]
    lines.append(f'{name:10s}| {g["pq"]:5.1f}  {g["sq"]:5.1f}  {g["rq"]:5.1f} {g["n"]:5d}')
  lines.append(f'{"IDX":4s}| {"PQ":>5s} {"SQ":>5s} {"RQ":>5s} {"IoU":>6s} {"TP":>7s} {"FP":>7s}'
               f' {"FN":>7s}')
  for cat_id, c in window['per_class'].items():
    lines.append(f'{int(cat_id):4d} | {c["pq"]:5.1f} {c["sq"]:5.1f} {c["rq"]:5.1f}'
                 f' {c["iou"]:6.1f} {c["tp"]:7d} {c["fp"]:7d} {c["fn"]:7d}')
  return '\n'.join(lines) + '\n'


def write_vpq_texts(vpq: dict, out_dir: str) -> list:
  """vpq-0.txt ... vpq-15.txt and vpq-final.txt (vpq_all / vpq_thing / vpq_stuff, 4 decimals)."""
  paths = []
  try:
    os.makedirs(out_dir, exist_ok=True)
    for k, window in vpq.items():
      if k == 'final':
        continue
      path = os.path.join(out_dir, f'vpq-{k}.txt')
      with open(path, 'w') as f:
        f.write(vpq_text(window))
      paths.append(path)
    path = os.path.join(out_dir, 'vpq-final.txt')
    final = vpq['final']
    with open(path, 'w') as f:
      f.write(f'vpq_all:{final["all"]["pq"]:.4f}\n')
      f.write(f'vpq_thing:{final["things"]["pq"]:.4f}\n')
      f.write(f'vpq_stuff:{final["stuff"]["pq"]:.4f}\n')
    paths.append(path)
  except OSError as exc:
    raise errors.WorkdirError(f'Cannot write the VPQ text files into {out_dir}: {exc}') from exc
  return paths


def format_table(results: dict) -> str:
  """The paper's layout: VPQ^k (All | Th | St) per k and the mean, then STQ / AQ / SQ."""
  lines = [f'dataset {results.get("dataset")}  videos {results.get("num_videos")}']
  vpq = results.get('vpq')
  if vpq:
    ks = [k for k in vpq if k != 'final']
    lines.append(f'{"":8s}' + ''.join(f'{"VPQ^" + k:>21s}' for k in ks) + f'{"VPQ":>21s}')
    lines.append(f'{"":8s}' + f'{"All":>7s}{"Th":>7s}{"St":>7s}' * (len(ks) + 1))
    for metric in ('pq', 'sq', 'rq'):
      row = ''.join(f'{vpq[k][g][metric]:7.1f}' for k in ks + ['final']
                    for g in ('all', 'things', 'stuff'))
      lines.append(f'{metric.upper():8s}' + row)
  stq = results.get('stq')
  if stq:
    lines.append(f'STQ {stq["stq"]:.4f}  AQ {stq["aq"]:.4f}  SQ (mIoU) {stq["sq"]:.4f}')
  return '\n'.join(lines)
