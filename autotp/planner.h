// The AutoTP plan: for every module and parameter, what happens to it on a TP group of a
// given size (rule, partition type, shard shape per rank), computed from shapes only, plus
// the warnings and errors (with their fixes). Shared by apply_autotp and `autotp plan`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autotp/autotp_config.h"
#include "autotp/layer_kinds.h"
#include "autotp/model_dims.h"
#include "layers/parallel/fused_shape.h"
#include "layers/parallel/shard_sizes.h"
#include "models/module_shapes.h"

namespace autotp {

// What happens to one module that owns parameters.
struct LayerPlan {
  std::string path;
  std::string type_name;
  LayerAction action = LayerAction::Replicated;
  // What decided it: "preset 'llama' #1 row `.*\.self_attn\.o_proj\.weight$`", "parser: ...",
  // "default: embeddings stay replicated", "unmatched: no spec matches", ...
  std::string rule;
  // Column / row only: the layer options the pass hands to the parallel layer.
  std::optional<FusedShape> shape;
  std::optional<int64_t> partition_dim;
  bool gather_output = false;
  // Column / row only: each rank's extent of the split dim (weight rows for column, columns
  // for row), summed over sub-parameters.
  std::vector<int64_t> rank_sizes;
};

// What happens to one parameter.
struct ParamPlan {
  std::string name;         // full dotted name
  std::string module_path;  // its module
  Shape full_shape;
  LayerAction action = LayerAction::Replicated;  // its layer's
  bool sharded = false;                          // tensor_model_parallel (else replicated)
  std::vector<Shape> rank_shapes;                // the shape each TP rank holds
  bool grad_allreduce = false;                   // replicated, gradient summed over the TP group
  std::string rule;
  std::string tied_to;  // the same tensor as this earlier parameter (counted once)
};

struct TPPlan {
  int64_t tp_size = 1;
  std::string model_type;
  SpecSelection selection;  // where the rules came from
  ShardRules rules;         // the shard-size rule inputs (num_kv_heads, grain)
  bool training = true;
  bool allow_uneven = false;
  bool overlap_comm = false;
  std::vector<LayerPlan> layers;  // every module with parameters, in model order
  std::vector<ParamPlan> params;  // every parameter, in model order
  // Linear(-like) layers no spec matched (spec and tp_plan sources), by path.
  std::vector<std::string> unmatched;
  std::vector<std::string> warnings;
  // Problems that make the plan unusable, each with its fix; identical problems of the
  // repeated blocks are reported once ("model.layers.*.mlp.up_proj (in 4 layers): ...").
  std::vector<std::string> errors;
  std::vector<int64_t> rank_parameters;  // parameter elements held by each TP rank

  bool valid() const { return errors.empty(); }
  const LayerPlan* layer(const std::string& path) const;  // nullptr when absent
  const ParamPlan* param(const std::string& name) const;  // nullptr when absent
  // The replicated parameters whose gradient is summed over TP, in model order.
  std::vector<std::string> grad_allreduce_params() const;
  // Paths of the column / row layers, in model order.
  std::vector<std::string> sharded_layers() const;
};

// The plan for `modules` (describe_modules or module_shapes) on config.effective_tp_size()
// ranks. Never throws for a problem of the model or sizes (those go to errors); throws for a
// broken config (unknown preset, an invalid tp_plan style).
//
// Rules beyond the spec/parser decisions:
//  * embeddings and lm_head/embed_out stay replicated unless a spec says otherwise; an
//    embedding matched by a column/row spec is an error (vocab-parallel embeddings are not
//    implemented), as is a column/row spec on a module that is not a Linear;
//  * a tied lm_head (weight shared with the embedding) stays replicated and tied, with a
//    warning when a spec asked to split it; an untied lm_head may be column + gather_output
//    (column without gather_output and row are errors: the loss needs full logits and the
//    head reads the replicated hidden state);
//  * training mode (without allow_uneven) needs every split even; any rank left with a
//    zero-width shard is an error: autotp does not idle ranks as DeepSpeed does when the TP
//    size exceeds the KV heads (the message says so and lists the sizes that work);
//  * in each sub-block, a row layer's input split must equal the output split of the column
//    layers feeding it (the same total, or proportional totals such as k/v against o_proj);
//  * q_proj / k_proj / v_proj of one attention, and gate_proj / up_proj of one MLP, must be
//    split alike (a column q with replicated k/v would pair heads wrongly, silently);
//  * per-head norms (q_norm / k_norm smaller than the q/k projection) beside column-split
//    q/k projections are marked grad_allreduce even when no spec says so; a norm as wide as
//    a column-split projection is an error (it cannot be computed on shards);
//  * strict_mode turns every unmatched Linear into an error.
TPPlan make_plan(const std::vector<ModuleShape>& modules, const AutoTPConfig& config,
                 const ModelDims& dims);

// An Error holding every problem of `plan` (no-op when valid).
void throw_if_invalid(const TPPlan& plan);

}  // namespace autotp
