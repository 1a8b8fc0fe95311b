"""``import softmax_dispatch`` and a NumPy call must stay light (no GPU libraries)."""

import json
import subprocess
import sys

CODE = """
import json, sys
import softmax_dispatch as sd
after_import = sorted(m for m in ("numba", "cupy", "numba.cuda", "torch", "jax", "dask", "scipy") if m in sys.modules)
import numpy as np
sd.softmax(np.arange(6.0).reshape(2, 3))
sd.log_softmax(np.arange(6.0).reshape(2, 3), axis=0, backend="numpy")
after_call = sorted(m for m in ("cupy", "numba.cuda", "torch", "jax", "dask") if m in sys.modules)
print(json.dumps([after_import, after_call]))
"""


def test_import_and_numpy_calls_import_no_gpu_library():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    after_import, after_call = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_import == [], f"import softmax_dispatch imported {after_import}"
    assert after_call == [], f"a NumPy call imported {after_call}"
