"""The Colab notebook: committed without outputs, and runs end to end on the tiny preset."""

import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'hybrid_tracker_colab.ipynb')
VARIANTS = ('Instance Tracker', 'Pixel Tracker', 'HybridTracker', 'HybridTracker + w/ Temporal')


def _read_notebook():
  nbformat = pytest.importorskip('nbformat')
  return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_without_outputs():
  nb = _read_notebook()
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code, 'the notebook has no code cells'
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
  assert nb.metadata.kernelspec.name == 'python3'
  # The notebook drives the library without flags (no absl, no subprocess to main).
  source = '\n'.join(c.source for c in code)
  assert 'train.run(config, WORKDIR)' in source
  assert 'hybrid_jax.main' not in source


def _this_python_kernel_manager():
  """A kernel manager whose 'python3' kernel is this interpreter, whatever kernelspecs exist.

  jupyter_client would otherwise pick the first 'python3' kernelspec on the Jupyter path (a
  user-level one may point at another Python); CI must not depend on what is installed there.
  """
  from jupyter_client.kernelspec import KernelSpec
  from jupyter_client.kernelspec import KernelSpecManager
  from jupyter_client.manager import KernelManager

  class ThisPython(KernelSpecManager):

    def get_kernel_spec(self, kernel_name):
      return KernelSpec(
          argv=[sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
          display_name='Python 3 (tests)', language='python', name=kernel_name,
          resource_dir='')

  return KernelManager(kernel_name='python3', kernel_spec_manager=ThisPython())


def _text_outputs(nb):
  out = []
  for cell in nb.cells:
    for o in cell.get('outputs', []):
      if o.get('output_type') == 'stream':
        out.append(o.get('text', ''))
      elif 'data' in o and 'text/plain' in o['data']:
        out.append(o['data']['text/plain'])
  return ''.join(out)


def _mime_types(nb):
  return {m for c in nb.cells for o in c.get('outputs', []) for m in o.get('data', {})}


@pytest.mark.slow
def test_notebook_runs_the_tiny_pipeline(tmp_path, monkeypatch):
  pytest.importorskip('nbclient')
  pytest.importorskip('ipykernel')
  from nbclient import NotebookClient

  workdir = tmp_path / 'work'
  monkeypatch.setenv('HYBRID_JAX_WORKDIR', str(workdir))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # The kernel is a new process: make the checkout importable there as the test run sees it
  # (CI installs the package; a plain checkout relies on this), so the install cell skips.
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
      p for p in (ROOT, os.environ.get('PYTHONPATH', '')) if p))
  nb = _read_notebook()
  client = NotebookClient(nb, km=_this_python_kernel_manager(), timeout=900,
                          resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}})
  client.execute()  # raises CellExecutionError on the first failing cell

  text = _text_outputs(nb)
  # The kernel was this interpreter, on the CPU, and found the repository by itself.
  assert f'({sys.executable})' in text
  assert 'backend CPU' in text
  assert f'repository root: {ROOT}' in text
  assert 'nothing to install' in text
  assert 'rejected:' in text  # the locked config refused the misspelt key
  # The accelerator section explains itself and skips on a CPU runtime.
  assert 'CPU runtime: this section is skipped' in text

  report = (workdir / 'report.md').read_text()
  rows = [line for line in report.splitlines() if line.startswith('| ')]  # not '|---|'
  names = [line.split('|')[1].strip() for line in rows]
  # The header, one row per tracker variant, then the same trackers on ground-truth segments.
  assert names == ['Method', *VARIANTS, *(f'{v} (GT segments)' for v in VARIANTS)]
  # The overrides of the notebook reached the run: 3 val clips, not the preset's 2.
  eval_files = sorted((workdir / 'predictions').glob('*/eval.json'))
  assert len(eval_files) == 8
  for path in eval_files:
    res = json.loads(path.read_text())
    assert res['num_videos'] == 3
    # The results cell prints this variant's final VPQ (all) to one decimal.
    line = next(l for l in text.splitlines() if l.startswith(path.parent.name + ' '))
    assert float(line.split()[1]) == pytest.approx(res['vpq']['final']['all']['pq'], abs=0.051)
  # The report (markdown), the VPQ plot (PNG) and the tracked clip (GIF) were displayed.
  assert {'text/markdown', 'image/png', 'image/gif'} <= _mime_types(nb)
  assert re.search(r'\| HybridTracker \+ w/ Temporal \|', next(
      o['data']['text/markdown'] for c in nb.cells for o in c.get('outputs', [])
      if 'text/markdown' in o.get('data', {})))
