// Autograd of the flow ops (actnorm, affine_coupling, additive_coupling, invertible_conv1x1,
// conv_conditioner), registered in C++ for every device.
//
// Why not torch.library.register_autograd (Python), as the other op families have: a Glow
// training step calls four of these ops 16 times each on tensors of a few thousand elements, and
// the Python wrapper added ~25 us per call (forward + backward; measured on actnorm at
// (64, 4, 4, 4), whose kernels take ~15 us), ~1.6 ms a step. A C++ autograd::Function costs a
// few microseconds.
//
// Each forward redispatches below autograd to the device kernel (CPU, CUDA, Triton registered
// from Python, or the fake kernel under torch.compile) and each backward calls the op's
// backward op, as the Python registrations of the other families do.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fastgen {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The typed dispatcher handle of fastgen::<name>.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// The gradients of a backward, made to raise if they are differentiated again (after
// create_graph=True; `create_graph` is the grad mode the backward was entered with): the backward
// ops have no derivative of their own, so a second derivative would otherwise silently be zero.
// Error nodes behind detached copies, as torch.autograd.function.once_differentiable does.
variable_list first_order_only(variable_list grads, bool create_graph, const char* name) {
  if (!create_graph) return grads;
  at::AutoGradMode enable(true);
  for (auto& g : grads) {
    if (g.defined() && g.is_floating_point()) g = g.detach().requires_grad_(true);
  }
  auto error = std::make_shared<torch::autograd::DelayedError>(
      std::string("fastgen::") + name + " has no second derivative: its backward is a fused kernel, so the "
      "gradients it returns cannot be differentiated again (create_graph=True)",
      static_cast<int64_t>(grads.size()));
  return (*error)(std::move(grads));
}

// Whether autograd has anything to record for these inputs. When not (no_grad, inference mode,
// or no input requires a gradient) the wrappers below call the kernel directly: no node, no saved
// tensors, ~2 us less a call, and Glow's sampling and evaluation make hundreds of calls.
bool records_grad(std::initializer_list<const Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

const Tensor* opt_ptr(const std::optional<Tensor>& t) { return t.has_value() ? &*t : nullptr; }

// actnorm and invertible_conv1x1 share their forward's signature, (x, a, b, reverse) -> (y, logdet).
using FlowSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, bool);

// Runs the forward op `kernel` below autograd, saving `saved` and `reverse` for the backward.
variable_list flow_forward(AutogradContext* ctx, const c10::TypedOperatorHandle<FlowSig>& kernel, const Tensor& x,
                           const Tensor& a, const Tensor& b, bool reverse, const variable_list& saved) {
  at::AutoDispatchBelowADInplaceOrView below;
  auto [y, logdet] = kernel.call(x, a, b, reverse);
  ctx->save_for_backward(saved);
  ctx->saved_data["reverse"] = reverse;
  return {y, logdet};
}

// ---------------------------------------------------------------- actnorm
using ActnormBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const std::optional<Tensor>&,
                                                               const Tensor&, const Tensor&, const Tensor&, bool);

struct Actnorm : torch::autograd::Function<Actnorm> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& bias, const Tensor& log_scale,
                               bool reverse) {
    static const auto kernel = op<FlowSig>("fastgen::actnorm");
    return flow_forward(ctx, kernel, x, bias, log_scale, reverse, {x, bias, log_scale});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<ActnormBackwardSig>("fastgen::actnorm_backward");
    const bool create_graph = at::GradMode::is_enabled();
    at::NoGradGuard no_grad;
    const auto saved = ctx->get_saved_variables();
    auto [gx, gb, gs] = kernel.call(grads[0], grads[1], saved[0], saved[1], saved[2],
                                    ctx->saved_data["reverse"].toBool());
    return first_order_only({gx, gb, gs, Tensor()}, create_graph, "actnorm");
  }
};

std::tuple<Tensor, Tensor> actnorm_autograd(const Tensor& x, const Tensor& bias, const Tensor& log_scale,
                                            bool reverse) {
  if (!records_grad({&x, &bias, &log_scale})) {
    static const auto kernel = op<FlowSig>("fastgen::actnorm");
    at::AutoDispatchBelowADInplaceOrView below;
    return kernel.call(x, bias, log_scale, reverse);
  }
  const auto out = Actnorm::apply(x, bias, log_scale, reverse);
  return {out[0], out[1]};
}

// ---------------------------------------------------------------- affine_coupling
using CouplingSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, bool,
                                               c10::string_view, double);
using CouplingBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const std::optional<Tensor>&,
                                                                const Tensor&, const Tensor&, const Tensor&, bool,
                                                                c10::string_view, double);

struct AffineCoupling : torch::autograd::Function<AffineCoupling> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& shift, const Tensor& log_scale,
                               bool reverse, c10::string_view scale, double clamp) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto kernel = op<CouplingSig>("fastgen::affine_coupling");
    auto [y, logdet] = kernel.call(x, shift, log_scale, reverse, scale, clamp);
    ctx->save_for_backward({x, shift, log_scale});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["scale"] = std::string(scale);
    ctx->saved_data["clamp"] = clamp;
    return {y, logdet};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<CouplingBackwardSig>("fastgen::affine_coupling_backward");
    const bool create_graph = at::GradMode::is_enabled();
    at::NoGradGuard no_grad;
    const auto saved = ctx->get_saved_variables();
    const std::string scale = ctx->saved_data["scale"].toStringRef();
    auto [gx, gshift, gscale] = kernel.call(grads[0], grads[1], saved[0], saved[1], saved[2],
                                            ctx->saved_data["reverse"].toBool(), scale,
                                            ctx->saved_data["clamp"].toDouble());
    return first_order_only({gx, gshift, gscale, Tensor(), Tensor(), Tensor()}, create_graph, "affine_coupling");
  }
};

std::tuple<Tensor, Tensor> affine_coupling_autograd(const Tensor& x, const Tensor& shift, const Tensor& log_scale,
                                                    bool reverse, c10::string_view scale, double clamp) {
  if (!records_grad({&x, &shift, &log_scale})) {
    static const auto kernel = op<CouplingSig>("fastgen::affine_coupling");
    at::AutoDispatchBelowADInplaceOrView below;
    return kernel.call(x, shift, log_scale, reverse, scale, clamp);
  }
  const auto out = AffineCoupling::apply(x, shift, log_scale, reverse, scale, clamp);
  return {out[0], out[1]};
}

// ---------------------------------------------------------------- additive_coupling
using AdditiveSig = Tensor(const Tensor&, const Tensor&, bool);

struct AdditiveCoupling : torch::autograd::Function<AdditiveCoupling> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& shift, bool reverse) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto kernel = op<AdditiveSig>("fastgen::additive_coupling");
    ctx->saved_data["reverse"] = reverse;
    return {kernel.call(x, shift, reverse)};
  }

  // y = x +- shift: the gradient passes to x as it is and to shift with the sign.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor& g = grads[0];
    return {g, ctx->saved_data["reverse"].toBool() ? -g : g, Tensor()};
  }
};

Tensor additive_coupling_autograd(const Tensor& x, const Tensor& shift, bool reverse) {
  if (!records_grad({&x, &shift})) {
    static const auto kernel = op<AdditiveSig>("fastgen::additive_coupling");
    at::AutoDispatchBelowADInplaceOrView below;
    return kernel.call(x, shift, reverse);
  }
  return AdditiveCoupling::apply(x, shift, reverse)[0];
}

// ---------------------------------------------------------------- invertible_conv1x1
using Conv1x1BackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const std::optional<Tensor>&,
                                                               const Tensor&, const Tensor&, bool,
                                                               std::array<bool, 3>);

struct InvertibleConv1x1 : torch::autograd::Function<InvertibleConv1x1> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& matrix, const Tensor& logabsdet,
                               bool reverse) {
    static const auto kernel = op<FlowSig>("fastgen::invertible_conv1x1");
    return flow_forward(ctx, kernel, x, matrix, logabsdet, reverse, {x, matrix});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::array<bool, 3> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    if (!need[0] && !need[1] && !need[2]) return {Tensor(), Tensor(), Tensor(), Tensor()};
    static const auto kernel = op<Conv1x1BackwardSig>("fastgen::invertible_conv1x1_backward");
    const bool create_graph = at::GradMode::is_enabled();
    at::NoGradGuard no_grad;
    const auto saved = ctx->get_saved_variables();
    auto [gx, gm, gl] = kernel.call(grads[0], grads[1], saved[0], saved[1], ctx->saved_data["reverse"].toBool(), need);
    return first_order_only({need[0] ? gx : Tensor(), need[1] ? gm : Tensor(), need[2] ? gl : Tensor(), Tensor()},
                            create_graph, "invertible_conv1x1");
  }
};

std::tuple<Tensor, Tensor> invertible_conv1x1_autograd(const Tensor& x, const Tensor& matrix,
                                                        const Tensor& logabsdet, bool reverse) {
  if (!records_grad({&x, &matrix, &logabsdet})) {
    static const auto kernel = op<FlowSig>("fastgen::invertible_conv1x1");
    at::AutoDispatchBelowADInplaceOrView below;
    return kernel.call(x, matrix, logabsdet, reverse);
  }
  const auto out = InvertibleConv1x1::apply(x, matrix, logabsdet, reverse);
  return {out[0], out[1]};
}

// ---------------------------------------------------------------- conv_conditioner
using Opt = std::optional<Tensor>;
using ConditionerSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Opt&, const Tensor&,
                                                          const Opt&, const Tensor&, const Opt&, double, const Opt&);
using ConditionerBackwardSig = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
    const Opt&);

struct ConvConditioner : torch::autograd::Function<ConvConditioner> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w1, const Opt& b1,
                               const Tensor& w2, const Opt& b2, const Tensor& w3, const Opt& b3, double dropout,
                               const Opt& seed) {
    at::AutoDispatchBelowADInplaceOrView below;
    static const auto kernel = op<ConditionerSig>("fastgen::conv_conditioner");
    auto [y, h1, h2] = kernel.call(x, w1, b1, w2, b2, w3, b3, dropout, seed);
    // h1 and h2 are outputs, so saving them keeps no reference cycle; an absent seed saves as an
    // undefined tensor.
    ctx->save_for_backward({x, h1, h2, w1, w2, w3, seed.value_or(Tensor())});
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["b1"] = b1.has_value();
    ctx->saved_data["b2"] = b2.has_value();
    ctx->saved_data["b3"] = b3.has_value();
    ctx->mark_non_differentiable({h1, h2});
    // No zero-filled gradients for h1 and h2 (two (N*H*W, hidden) tensors, fresh pages each
    // step): the backward reads only y's.
    ctx->set_materialize_grads(false);
    return {y, h1, h2};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<ConditionerBackwardSig>("fastgen::conv_conditioner_backward");
    const bool create_graph = at::GradMode::is_enabled();
    at::NoGradGuard no_grad;
    const auto s = ctx->get_saved_variables();
    const Opt seed = s[6].defined() ? Opt(s[6]) : Opt();
    if (!grads[0].defined()) return variable_list(9);  // y's gradient is zero: so are all of these
    auto [gx, gw1, gb1, gw2, gb2, gw3, gb3] =
        kernel.call(grads[0], s[0], s[1], s[2], s[3], s[4], s[5], ctx->saved_data["dropout"].toDouble(), seed);
    // The kernel sums the gradient of every bias; a missing one gets none.
    const auto bias_grad = [&](const char* name, const Tensor& g) {
      return ctx->saved_data[name].toBool() ? g : Tensor();
    };
    // dropout and seed get no gradient.
    return first_order_only({gx, gw1, bias_grad("b1", gb1), gw2, bias_grad("b2", gb2), gw3, bias_grad("b3", gb3),
                             Tensor(), Tensor()},
                            create_graph, "conv_conditioner");
  }
};

std::tuple<Tensor, Tensor, Tensor> conv_conditioner_autograd(const Tensor& x, const Tensor& w1, const Opt& b1,
                                                             const Tensor& w2, const Opt& b2, const Tensor& w3,
                                                             const Opt& b3, double dropout, const Opt& seed) {
  if (!records_grad({&x, &w1, opt_ptr(b1), &w2, opt_ptr(b2), &w3, opt_ptr(b3)})) {
    static const auto kernel = op<ConditionerSig>("fastgen::conv_conditioner");
    at::AutoDispatchBelowADInplaceOrView below;
    return kernel.call(x, w1, b1, w2, b2, w3, b3, dropout, seed);
  }
  const auto out = ConvConditioner::apply(x, w1, b1, w2, b2, w3, b3, dropout, seed);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("actnorm", &actnorm_autograd);
  m.impl("affine_coupling", &affine_coupling_autograd);
  m.impl("additive_coupling", &additive_coupling_autograd);
  m.impl("invertible_conv1x1", &invertible_conv1x1_autograd);
  m.impl("conv_conditioner", &conv_conditioner_autograd);
}

}  // namespace fastgen
