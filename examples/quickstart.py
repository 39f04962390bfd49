"""A first look at tensorjit: eager tensors with backward(), @jit with grad, and the IR."""
import numpy as np

import jit
from jit import Tensor, grad, mse_loss, sigmoid

# Eager, PyTorch style: gradients land in .grad.
a = Tensor([[1, 2], [3, 4]], requires_grad=True)
b = Tensor([[5, 6], [7, 8]], requires_grad=True)
loss = sum(sigmoid(a @ b).flatten())
loss.backward()
print("eager: d loss / d a =\n", a.grad)


# Compiled, JAX style: trace once per input signature, then run the compiled program.
@jit.jit
def model_loss(w, x, y):
    return mse_loss(jit.relu(x @ w), y)


rng = np.random.default_rng(0)
w = rng.standard_normal((4, 1)).astype(np.float32)
x = rng.standard_normal((8, 4)).astype(np.float32)
y = rng.standard_normal((8, 1)).astype(np.float32)

step = jit.jit(grad(model_loss))
for i in range(50):
    w = w - 0.1 * step(w, x, y).numpy()
print("loss after 50 steps:", model_loss(w, x, y).item())

# Every stage prints: the traced gradient program and its optimized form.
lowered = step.lower(w, x, y)
print(lowered.as_text("traced"))
print(lowered.as_text("optimized"))
