// `autotp train`: argument parsing, config loading with --set overrides, the MPI session and
// process grid under mpirun, the Trainer's run.
#include "tools/train_command.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>

#include "core/comm/device_selection.h"
#include "core/comm/mpi_communicator.h"
#include "core/comm/mpi_session.h"
#include "core/comm/parallel_grid.h"
#include "core/error.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/trainer.h"
#include "engine/training_device.h"
#include "tools/command_args.h"

namespace autotp::tools {

const char* const kTrainUsage =
    "autotp train CONFIG.yaml [--set key.path=value ...] [--out DIR] [--resume [DIR] | "
    "--overwrite] [--device cpu|cuda]";

namespace {

bool is_yaml_name(const std::string& name) {
  const std::string ext = std::filesystem::path(name).extension().string();
  return ext == ".yaml" || ext == ".yml";
}

// True when a launcher (mpirun, srun) started this process: Open MPI, MPICH/PMI and PMIx set
// these. A plain `autotp train` runs without MPI.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

}  // namespace

namespace {

// The config with the overrides; world_size (under mpirun) sets the data-parallel size.
Config load_train_config(const TrainArgs& a, std::optional<int64_t> world_size) {
  ConfigLoadOptions load;
  load.overrides = a.overrides;
  load.world_size = world_size;
  return load_config_file(a.config_path, load);
}

}  // namespace

TrainerOptions train_options(const TrainArgs& a) {
  TrainerOptions options;
  options.out_dir = a.out_dir;
  options.resume = a.resume;
  options.resume_dir = a.resume_dir;
  options.overwrite = a.overwrite;
  if (a.resume && !a.resume_dir.empty() && a.out_dir.empty()) {
    // Continue writing where the run lives: DIR, or for a checkpoint DIR = RUN/checkpoints/
    // step-N, RUN.
    namespace fs = std::filesystem;
    // Absolute, so a relative checkpoints/step-N has a run directory; without a trailing
    // separator (shell completion adds one).
    fs::path dir = fs::absolute(a.resume_dir).lexically_normal();
    if (dir.filename().empty()) dir = dir.parent_path();
    const bool checkpoint = fs::exists(dir / kCheckpointManifestFile);
    if (checkpoint && dir.parent_path().filename() != kCheckpointsDir) {
      AUTOTP_FAIL(
          "train: --resume {} names a checkpoint outside a run's checkpoints/ folder: "
          "give --out for the run's outputs",
          a.resume_dir);
    }
    options.out_dir = checkpoint ? dir.parent_path().parent_path().string() : a.resume_dir;
  }
  return options;
}

Device train_device(const std::string& requested, int local_rank) {
  if (requested == "cpu" || (requested.empty() && !cuda_available())) return Device::cpu();
  check_training_device(Device::cuda(0), "train: --device cuda");
  return Device::cuda(local_rank % cuda_device_count());
}

TrainArgs parse_train_args(const std::vector<std::string>& args) {
  TrainArgs a;
  ArgWalker w(args, "train", kTrainUsage);
  for (; !w.done(); w.advance()) {
    const std::string& arg = w.current();
    if (auto v = w.take_value("--set")) {
      if (v->find('=') == std::string::npos) {
        w.fail(fmt::format("--set expects key.path=value, got '{}'", *v));
      }
      a.overrides.push_back(*v);
    } else if (auto out = w.take_value("--out")) {
      if (out->empty()) w.fail("--out needs a directory");
      a.out_dir = *out;
    } else if (arg == "--resume") {
      a.resume = true;
      // An optional directory: the next argument unless it is an option or a YAML file.
      if (w.has_next() && w.next().rfind("-", 0) != 0 && !is_yaml_name(w.next())) {
        w.advance();
        a.resume_dir = w.current();
      }
    } else if (arg == "--overwrite") {
      a.overwrite = true;
    } else if (auto v = w.take_value("--device")) {
      if (*v != "cpu" && *v != "cuda") w.fail(fmt::format("--device: '{}' is not cpu or cuda", *v));
      a.device = *v;
    } else if (arg.rfind("--resume=", 0) == 0) {
      a.resume = true;
      a.resume_dir = arg.substr(9);
      if (a.resume_dir.empty()) w.fail("--resume= needs a directory");
    } else if (arg.rfind("-", 0) == 0) {
      w.fail(fmt::format("unknown option '{}'", arg));
    } else if (a.config_path.empty()) {
      a.config_path = arg;
    } else {
      w.fail(fmt::format("one config file expected, got '{}' and '{}'", a.config_path, arg));
    }
  }
  if (a.config_path.empty()) w.fail("missing CONFIG.yaml");
  if (a.resume && a.overwrite)
    w.fail("--resume continues a run and --overwrite replaces it: give one");
  return a;
}

int run_train(const std::vector<std::string>& args) {
  const TrainArgs a = parse_train_args(args);
  if (!launched_by_mpi()) {
    TrainerOptions options = train_options(a);
    options.device = train_device(a.device, 0);
    Trainer trainer(load_train_config(a, std::nullopt), options);
    trainer.run();
    return 0;
  }
  MpiSession session;
  const int rank = session.world_rank();
  // Collective: every rank learns its index among the ranks of its node (its GPU).
  const NodeInfo node = node_local_info(MPI_COMM_WORLD);
  // On GPUs, one distinct GPU per rank communicates over NCCL; ranks sharing a GPU (NCCL
  // refuses them) or the CPU use MPI, staging device tensors through host memory.
  std::shared_ptr<Communicator> world;
  if (a.device != "cpu" && cuda_available()) {
    const DevicePlan plan = choose_devices(MPI_COMM_WORLD);  // collective; prints its notice
    world = make_world_communicator(plan, MPI_COMM_WORLD);
  } else {
    world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  }
  // Setup has no collectives after the grid split, so every rank reports its own error and
  // the ranks agree to stop together (one message from rank 0, a clean exit code 2).
  std::unique_ptr<Trainer> trainer;
  std::string error;
  try {
    Config config = load_train_config(a, session.world_size());
    const int tp = static_cast<int>(std::max<int64_t>(1, config.tensor_parallel.autotp_size));
    TrainerOptions options = train_options(a);
    options.device = train_device(a.device, node.local_rank);
    options.grid =
        std::make_shared<ParallelGrid>(world, tp, static_cast<int>(config.batch.dp_size));
    trainer = std::make_unique<Trainer>(std::move(config), options);
  } catch (const Error& e) {
    error = e.what();
  }
  const std::vector<std::vector<uint8_t>> errors =
      world->exchange_bytes(std::vector<uint8_t>(error.begin(), error.end()));
  for (size_t r = 0; r < errors.size(); ++r) {
    if (errors[r].empty()) continue;
    if (rank == 0) {
      const std::string text(errors[r].begin(), errors[r].end());
      std::fprintf(stderr, "autotp: error: %s%s\n",
                   r == 0 ? "" : fmt::format("rank {}: ", r).c_str(), text.c_str());
    }
    return 2;
  }
  try {
    trainer->run();
  } catch (const Error& e) {
    abort_job(fmt::format("error: {}", e.what()), 2);  // the other ranks may wait in a collective
  }
  return 0;
}

}  // namespace autotp::tools
