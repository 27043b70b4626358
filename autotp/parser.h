// The automatic parser: decides column / row / replicated for every Linear of a model that
// has no specs, preset or HF tp_plan, from the module tree's structure and names.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "autotp/layer_kinds.h"
#include "autotp/model_dims.h"
#include "layers/parallel/fused_shape.h"
#include "models/module_shapes.h"

namespace autotp {

struct ParserDecision {
  std::string path;  // the Linear's module path
  LayerAction action = LayerAction::Replicated;
  std::optional<FusedShape> shape;  // fused q|k|v or gate|up weights
  std::string reason;               // "parser: row (named o_proj)", ...
};

// One decision per Linear module of `modules` (in order). Our Module tree records no
// dataflow, so "writes back into the residual stream" is decided from structure:
//
//  * Blocks are the children of the outermost ModuleLists: the module path up to its first
//    index component ("model.layers.3"). Linears outside every block (lm_head, heads,
//    projections of the embeddings) stay replicated.
//  * Inside a block, Linears are grouped into sub-blocks: each container child (self_attn,
//    mlp, an expert "experts.5", shared_experts, ...) is its own sub-block (nested
//    containers again their own), and Linears registered directly in the block form
//    sub-blocks separated by the block's normalizations (RMSNorm and LayerNorm both count;
//    norms inside a sub-block, such as q_norm or q_a_layernorm, are not boundaries).
//  * Skipped first (replicated): MoE routers (a Linear named "gate" or "router" directly in a
//    mlp / moe / block_sparse_moe container, shared_expert_gate) and MLA low-rank
//    down-projections (q_a_proj, kv_a_proj_with_mqa), as in DeepSpeed.
//  * In each sub-block, row-parallel are the Linears named o_proj, out_proj, down_proj,
//    dense_4h_to_h, w2 or c_proj (or "dense" inside an attention container); when none is so
//    named, the last Linear of the sub-block (in registration order: the one before the next
//    norm or the end of the sub-block) is the one that writes back into the residual stream
//    and becomes row-parallel. The other Linears of the sub-block are column-parallel.
//  * A sub-block with a single Linear (or only row-named ones) keeps them replicated: such a
//    Linear both reads and writes the replicated residual stream, so it cannot be split.
//  * Column Linears with a fused name get a fused shape: qkv_proj / query_key_value / W_pack /
//    Wqkv / c_attn -> ((q, kv, kv), -1) from the head counts (plain for bloom's interleaved
//    layout; (3, -1) when the head counts are unknown), gate_up_proj (and chatglm's
//    dense_h_to_4h) -> (2, -1).
std::vector<ParserDecision> parse_layers(const std::vector<ModuleShape>& modules,
                                         const ModelDims& dims);

// The block paths the parser found ("model.layers.0", ...), in order.
std::vector<std::string> find_blocks(const std::vector<ModuleShape>& modules);

}  // namespace autotp
