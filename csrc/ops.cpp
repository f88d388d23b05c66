// Every fastgen op's schema, declared once. Kernels register against these names from
// their own files (cpu/, cuda/) and from Python (Triton, fake kernels, autograd).
//
// Why TORCH_LIBRARY and not pybind11: ops registered with the dispatcher are visible to
// torch.compile, torch.library.opcheck, autograd and the fake-tensor machinery, which
// pybind11 functions are not. The module itself needs no Python bindings: importing the
// shared library runs these registrations.
#include <torch/library.h>

TORCH_LIBRARY(fastgen, m) {
  // Gaussian family. `seed` is a 0-dim int64 tensor on the input's device: when `eps` is None
  // the noise is drawn inside the kernel from fastgen's counter-based stream keyed by it.
  m.def("reparameterize(Tensor mu, Tensor logvar, Tensor? eps, Tensor? seed) -> Tensor");
  m.def("gaussian_kl(Tensor mu, Tensor logvar) -> Tensor");
  m.def(
      "reparameterize_with_kl(Tensor mu, Tensor logvar, Tensor? eps, Tensor? seed)"
      " -> (Tensor, Tensor)");
  // One backward serves all three: grad_z or grad_kl may be None.
  m.def(
      "reparameterize_backward(Tensor? grad_z, Tensor? grad_kl, Tensor mu, Tensor logvar,"
      " Tensor? eps, Tensor? seed) -> (Tensor, Tensor)");
  m.def("standard_normal_log_prob(Tensor z) -> Tensor");
  m.def("standard_normal_log_prob_backward(Tensor grad, Tensor z) -> Tensor");

  // Convolution family. causal_conv1d: x (N, C_in, T), weight (C_out, C_in, K), bias (C_out,)
  // or None -> y (N, C_out, T), y[t] depending on x[t - (K-1-k) * dilation] only (no padding
  // copy is built). The backward returns (grad_x, grad_weight, grad_bias); an output whose
  // output_mask entry is false is returned as an empty (0,) tensor, and grad_bias is the sum of
  // grad_y over N and T.
  m.def("causal_conv1d(Tensor x, Tensor weight, Tensor? bias, int dilation) -> Tensor");
  m.def(
      "causal_conv1d_backward(Tensor grad_y, Tensor x, Tensor weight, int dilation,"
      " bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}
