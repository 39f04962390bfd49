"""tensorjit's user API: eager `Tensor`, `jit`, the transformations and the functional ops."""
import numpy as _np

from jit.api import jit, make_ir
from jit.autograd import no_grad
from jit.check import check_grads
from jit.ops import (abs, add, broadcast_to, concatenate, cross_entropy, div, dot, exp, log,
                     log_softmax, logsumexp, matmul, max, maximum, mean, min, minimum,
                     mse_loss, mul, neg, pow, relu, reshape, sigmoid, softmax, sqrt, stack,
                     stop_gradient, sub, sum, tanh, transpose, where)
from jit.tensor import Tensor
from jit.trace import TracerError
from jit.transforms import grad, value_and_grad, vjp

float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
bool_ = _np.dtype(_np.bool_)

__all__ = [
    "Tensor", "TracerError", "abs", "add", "bool_", "broadcast_to", "check_grads",
    "concatenate", "cross_entropy", "div", "dot", "exp", "float32", "float64", "grad", "int32",
    "int64", "jit", "log", "log_softmax", "logsumexp", "make_ir", "matmul", "max", "maximum",
    "mean", "min", "minimum", "mse_loss", "mul", "neg", "no_grad", "pow", "relu", "reshape",
    "sigmoid", "softmax", "sqrt", "stack", "stop_gradient", "sub", "sum", "tanh", "transpose",
    "value_and_grad", "vjp", "where",
]
