// `autotp plan`: loads the YAML config, reads the model's HF config (inline or config.json,
// with its base_model_tp_plan), lists its modules from the config alone (no weights are
// allocated), makes the AutoTP plan and prints it with per-rank memory.
#include "tools/plan_command.h"

#include <filesystem>

#include "autotp/from_engine_config.h"
#include "autotp/plan_report.h"
#include "autotp/planner.h"
#include "core/error.h"
#include "core/io/json.h"
#include "engine/config.h"
#include "engine/hf_config.h"
#include "models/module_shapes.h"
#include "tools/config_notes.h"

namespace autotp::tools {

const char* const kPlanUsage = "autotp plan CONFIG.yaml [--tp N] [--json] [--set key=value ...]";

namespace {

struct PlanArgs {
  std::string config_path;
  std::optional<int64_t> tp;
  bool json = false;
  std::vector<std::string> overrides;
};

const std::string kUsage = std::string("usage: ") + kPlanUsage;

PlanArgs parse_args(const std::vector<std::string>& args) {
  PlanArgs a;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--json") {
      a.json = true;
    } else if (arg == "--tp" || arg == "--set") {
      AUTOTP_CHECK(i + 1 < args.size(), "plan: {} needs a value\n{}", arg, kUsage);
      const std::string& value = args[++i];
      if (arg == "--set") {
        a.overrides.push_back(value);
        continue;
      }
      char* end = nullptr;
      const long long n = std::strtoll(value.c_str(), &end, 10);
      AUTOTP_CHECK(!value.empty() && *end == '\0' && n >= 1,
                   "plan: --tp must be a positive integer, got '{}'", value);
      a.tp = n;
    } else if (!arg.empty() && arg[0] == '-') {
      AUTOTP_FAIL("plan: unknown option '{}'\n{}", arg, kUsage);
    } else {
      AUTOTP_CHECK(a.config_path.empty(), "plan: more than one config file ('{}', '{}')\n{}",
                   a.config_path, arg, kUsage);
      a.config_path = arg;
    }
  }
  AUTOTP_CHECK(!a.config_path.empty(), "plan: no config file given\n{}", kUsage);
  return a;
}

// A YAML `model` map as ModelConfig's text map: scalars as written, one level of nested maps,
// anything deeper or a list as its YAML text (only ignored keys hold those).
ModelConfigMap map_from_yaml(const YAML::Node& node) {
  ModelConfigMap map;
  for (const auto& item : node) {
    const std::string key = item.first.as<std::string>();
    const YAML::Node& value = item.second;
    if (key == "path") continue;
    if (value.IsMap()) {
      for (const auto& sub : value) {
        map.objects[key][sub.first.as<std::string>()] =
            sub.second.IsScalar() ? sub.second.Scalar() : YAML::Dump(sub.second);
      }
    } else if (value.IsScalar()) {
      map.scalars[key] = value.Scalar();
    } else if (value.IsNull()) {
      map.scalars[key] = "null";
    } else {
      map.scalars[key] = YAML::Dump(value);
    }
  }
  return map;
}

struct PlanModel {
  ModelConfig config;
  HfTpPlan tp_plan;
  std::string tp_plan_where;
};

// The model's config (and HF tp_plan) from the config's model section. base_model_tp_plan is
// read from config.json; any other key ModelConfig does not know is an error.
PlanModel read_model(const Config& cfg) {
  AUTOTP_CHECK(cfg.model.present(),
               "{}: the config has no 'model' section; plan needs the model's Hugging Face "
               "config (inline fields or 'path:')",
               cfg.source);
  PlanModel out;
  ModelConfigMap map;
  std::string where = cfg.model.where;
  if (!cfg.model.path.empty()) {
    std::filesystem::path file = cfg.model.path;
    if (std::filesystem::is_directory(file)) file /= "config.json";
    AUTOTP_CHECK(std::filesystem::is_regular_file(file),
                 "{}: model.path '{}' is neither a config.json file nor a directory holding one",
                 cfg.model.where, cfg.model.path);
    const json::Value json = json::parse_file(file.string());
    map = model_config_map_from_json(json);
    where = file.string();
    if (const json::Value* plan = json.find("base_model_tp_plan");
        plan != nullptr && plan->is_object()) {
      for (const std::string& key : plan->keys())
        out.tp_plan.emplace_back(key, (*plan)[key].as_string());
      out.tp_plan_where = file.string() + " base_model_tp_plan";
    }
  } else {
    map = map_from_yaml(cfg.model.node);
  }
  map.objects.erase("base_model_tp_plan");
  map.scalars.erase("base_model_tp_plan");
  std::vector<std::string> unknown;
  try {
    out.config = ModelConfig::from_map(map, &unknown);
  } catch (const Error& e) {
    AUTOTP_FAIL("{}: {}", where, e.what());
  }
  AUTOTP_CHECK(unknown.empty(), "{}: unknown model config key '{}'", where, unknown.front());
  return out;
}

}  // namespace

int run_plan_command(const std::vector<std::string>& args, std::FILE* out) {
  const PlanArgs a = parse_args(args);
  ConfigLoadOptions load;
  load.overrides = a.overrides;
  if (a.tp) load.overrides.push_back(fmt::format("tensor_parallel.autotp_size={}", *a.tp));
  const Config cfg = load_config_file(a.config_path, load);
  print_config_warnings(cfg, "plan", a.json ? stderr : out);
  const PlanModel model = read_model(cfg);

  AutoTPConfig tp = autotp_config_from(cfg.tensor_parallel);
  tp.hf_tp_plan = model.tp_plan;
  if (!model.tp_plan_where.empty()) tp.hf_tp_plan_where = model.tp_plan_where;
  const TPPlan plan = make_plan(module_shapes(model.config), tp, model_dims(model.config));

  MemoryModel memory;
  if (cfg.bf16 || cfg.fp16.enabled) {
    memory.weight_bytes = 2;
    memory.grad_bytes = 2;
    memory.master_bytes = 4;
  }
  memory.zero_stage = cfg.zero_stage;
  memory.dp_size = cfg.batch.dp_size;
  const std::vector<RankMemory> mem = plan_memory(plan, memory);
  if (a.json) {
    json::Value doc = plan_to_json(plan, mem);
    doc.set("config", a.config_path);
    std::fprintf(out, "%s\n", doc.dump(2).c_str());
  } else {
    std::fprintf(out, "config: %s\n%s", a.config_path.c_str(), plan_to_text(plan, mem).c_str());
    if (memory.zero_stage > 0) {
      std::fprintf(out, "(ZeRO stage %lld over %lld data-parallel ranks)\n",
                   static_cast<long long>(memory.zero_stage),
                   static_cast<long long>(memory.dp_size));
    }
  }
  return plan.valid() ? 0 : 1;
}

}  // namespace autotp::tools
