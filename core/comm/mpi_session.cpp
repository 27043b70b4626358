// MpiSession lifetime, MPI error messages, and abort_job.
#include "core/comm/mpi_session.h"

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "core/error.h"

namespace autotp {

int mpi_world_rank() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void abort_job(const std::string& message, int code) {
  std::fprintf(stderr, "autotp: rank %d: %s\n", mpi_world_rank(), message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi_world_rank() >= 0) MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();
}

namespace detail {
void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    std::snprintf(text, sizeof(text), "MPI error code %d", code);
  }
  throw Error(fmt::format("MPI call {} failed on rank {}: {} ({}:{})", call, mpi_world_rank(), text,
                          file, line));
}
}  // namespace detail

MpiSession::MpiSession(int* argc, char*** argv) : uncaught_at_start_(std::uncaught_exceptions()) {
  int initialized = 0;
  AUTOTP_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    AUTOTP_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
    AUTOTP_CHECK(provided >= MPI_THREAD_FUNNELED,
                 "MPI provides thread level {} but autotp needs MPI_THREAD_FUNNELED ({})", provided,
                 static_cast<int>(MPI_THREAD_FUNNELED));
  }
  active_ = true;
  // Errors on the world communicator come back as codes (checked), not as a silent abort.
  AUTOTP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  AUTOTP_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  AUTOTP_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
}

MpiSession::MpiSession(MpiSession&& other) noexcept
    : owns_(other.owns_),
      active_(other.active_),
      uncaught_at_start_(other.uncaught_at_start_),
      world_rank_(other.world_rank_),
      world_size_(other.world_size_) {
  other.active_ = false;
  other.owns_ = false;
}

MpiSession::~MpiSession() {
  if (!active_) return;
  if (std::uncaught_exceptions() > uncaught_at_start_) {
    abort_job(
        "an exception is ending this rank's MPI session; aborting the job so that the other "
        "ranks do not wait for it forever");
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

}  // namespace autotp
