"""The backend runs only these aten ops: pure compute on tensors it already holds.

Nothing here touches files, the network, raw storage or Python objects (no `aten::from_file`,
`aten::set_`, `aten::_pin_memory`, no `aten::as_strided` that could reinterpret storage).
An op is named by its overload packet (`aten::convolution`); every overload of it is allowed.
Beside aten, the backend's own kernels (gvirtus.kernels: `gvirtus::remap_bilinear_u8`, ...) are allowed;
`getitem` (picking one output of a multi-output op) is the only other target of a graph.
"""

from __future__ import annotations

import torch

from gvirtus import kernels
from gvirtus.errors import OpNotAllowed

GETITEM = "getitem"

_ELEMENTWISE = """
abs absolute acos acosh add addcdiv addcmul asin asinh atan atan2 atanh bitwise_and bitwise_not bitwise_or
bitwise_xor ceil clamp clamp_max clamp_min clip copysign cos cosh deg2rad div divide eq erf erfc erfinv exp
exp2 expm1 floor floor_divide fmod frac ge gt hypot isfinite isinf isnan le lerp lgamma log log10 log1p log2
logical_and logical_not logical_or logical_xor logit lt maximum minimum mul multiply nan_to_num ne neg negative
pow rad2deg reciprocal remainder round rsqrt sgn sign signbit sin sinh sqrt square sub subtract tan tanh trunc
true_divide where xlogy fill fill_ masked_fill rsub heaviside fmax fmin
"""
_ACTIVATIONS = """
relu relu6 relu_ leaky_relu leaky_relu_ elu elu_ selu celu gelu silu silu_ mish sigmoid sigmoid_ hardsigmoid
hardsigmoid_ hardswish hardswish_ hardtanh hardtanh_ softplus softshrink hardshrink tanh_ prelu _prelu_kernel
threshold threshold_ glu log_sigmoid log_sigmoid_forward softmax _softmax log_softmax _log_softmax rrelu
"""
_NN = """
convolution _convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d
_conv_depthwise2d mkldnn_convolution cudnn_convolution linear addmm mm bmm matmul baddbmm addmv mv dot
einsum native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training batch_norm
_native_batch_norm_legit_functional native_layer_norm layer_norm native_group_norm group_norm instance_norm
rms_norm _fused_rms_norm max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices
avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
_adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_max_pool2d upsample_nearest1d upsample_nearest2d
upsample_nearest3d _upsample_nearest_exact2d upsample_bilinear2d _upsample_bilinear2d_aa upsample_bicubic2d
upsample_linear1d upsample_trilinear3d grid_sampler grid_sampler_2d grid_sampler_3d affine_grid_generator
pixel_shuffle pixel_unshuffle constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d
replication_pad1d replication_pad2d replication_pad3d _pad_enum dropout native_dropout feature_dropout
alpha_dropout embedding cosine_similarity pairwise_distance cdist _cdist_forward im2col col2im
scaled_dot_product_attention _scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention
_scaled_dot_product_attention_math _scaled_dot_product_flash_attention_for_cpu
"""
_REDUCTIONS = """
sum mean amax amin max min argmax argmin prod std var std_mean var_mean norm linalg_vector_norm
frobenius_norm logsumexp cumsum cumprod cummax cummin all any count_nonzero sort argsort topk kthvalue
median nanmedian mode aminmax _softmax_backward_data
"""
_SHAPES = """
view _unsafe_view reshape _reshape_alias permute transpose t expand expand_as squeeze unsqueeze flatten
unflatten contiguous clone detach alias lift_fresh lift_fresh_copy select slice slice_scatter select_scatter
index index_select gather scatter scatter_add scatter_reduce index_put index_put_ index_add index_copy
masked_select masked_scatter take narrow split split_with_sizes chunk unbind cat concat concatenate stack
hstack vstack roll flip repeat repeat_interleave tile movedim unfold diagonal diag tril triu _to_copy to
copy copy_ zero_ clamp_ add_ sub_ mul_ div_ view_as reshape_as nonzero nonzero_static
bucketize searchsorted one_hot channel_shuffle native_channel_shuffle diag_embed tensor_split
empty empty_like empty_strided zeros zeros_like ones ones_like full full_like arange linspace logspace eye
scalar_tensor new_empty new_empty_strided new_zeros new_ones new_full _local_scalar_dense item result_type
type_as _assert_async _assert_tensor_metadata sym_size sym_stride sym_numel
"""

ALLOWED_PACKETS: frozenset[str] = frozenset(
    "aten::" + name for block in (_ELEMENTWISE, _ACTIVATIONS, _NN, _REDUCTIONS, _SHAPES) for name in block.split()
) | frozenset(kernels.OPS)  # the backend's own kernels (gvirtus.kernels): pure compute as well


def resolve_op(target: str) -> torch._ops.OpOverload:
    """The aten overload named `target` ("aten::add.Tensor"), if its packet is allowed.

    Raises:
        OpNotAllowed: the packet is not in the allowlist, or no such op exists.
    """
    packet, _, overload = target.partition(".")
    if packet not in ALLOWED_PACKETS:
        raise OpNotAllowed(f"op {target!r} is not in the backend's allowlist of compute ops "
                           "(gvirtus.allowlist); the graph was rejected")
    namespace, _, name = packet.partition("::")
    try:
        return getattr(getattr(getattr(torch.ops, namespace), name), overload or "default")
    except AttributeError:
        raise OpNotAllowed(f"op {target!r} does not exist in this backend's torch "
                           f"{torch.__version__}") from None


def op_target(op: object) -> str:
    """The wire name of an aten (or gvirtus kernel) overload: "aten::add.Tensor"."""
    if isinstance(op, torch._ops.OpOverload):
        return f"{op._schema.name}.{op._overloadname}"
    raise OpNotAllowed(f"{op!r} is not an aten op; only aten-level graphs can be sent to the backend")


def writes_args(op: torch._ops.OpOverload) -> list[int]:
    """Positions of the arguments that `op` writes in place (from its schema's alias info)."""
    return [i for i, a in enumerate(op._schema.arguments) if a.alias_info is not None and a.alias_info.is_write]
