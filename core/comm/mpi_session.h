// MPI lifetime and MPI error reporting: MpiSession (RAII MPI_Init_thread/MPI_Finalize, and
// MPI_Abort when it ends by an exception), AUTOTP_MPI_CHECK, and abort_job().
#pragma once

#include <mpi.h>

#include <string>

namespace autotp {

// Initializes MPI for the process (MPI_THREAD_FUNNELED: autotp calls MPI only from the thread
// that created the session, using nonblocking collectives) and finalizes it at the end. When
// MPI is already initialized (by the caller), the session neither initializes nor finalizes.
// If the session is destroyed while an exception unwinds the stack, it aborts the whole job
// (MPI_Abort) instead of finalizing: the other ranks would otherwise wait forever.
class MpiSession {
 public:
  MpiSession(int* argc = nullptr, char*** argv = nullptr);
  ~MpiSession();
  MpiSession(MpiSession&& other) noexcept;
  MpiSession& operator=(MpiSession&&) = delete;
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  bool owns_mpi() const { return owns_; }

 private:
  bool owns_ = false;
  bool active_ = false;
  int uncaught_at_start_ = 0;
  int world_rank_ = 0;
  int world_size_ = 1;
};

// This process's rank in MPI_COMM_WORLD, or -1 before MPI_Init / after MPI_Finalize.
int mpi_world_rank();

// Prints "autotp: rank R: <message>" to stderr and ends every rank of the job with `code`
// (MPI_Abort; std::abort when MPI is not running). For failures that would otherwise hang
// the other ranks: a collective that never completes, a session unwound by an exception.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

namespace detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}  // namespace detail

}  // namespace autotp

// AUTOTP_MPI_CHECK(MPI_Iallreduce(...)): throws autotp::Error naming the call, MPI's error
// text, the world rank and file:line when the call does not return MPI_SUCCESS.
#define AUTOTP_MPI_CHECK(call)                                                          \
  do {                                                                                  \
    const int autotp_mpi_status_ = (call);                                              \
    if (autotp_mpi_status_ != MPI_SUCCESS) {                                            \
      ::autotp::detail::throw_mpi_error(autotp_mpi_status_, #call, __FILE__, __LINE__); \
    }                                                                                   \
  } while (0)
