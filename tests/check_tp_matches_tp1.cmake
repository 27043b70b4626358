# ctest script: trains the tiny Llama for a few steps on one process and under mpirun with
# tensor_parallel.autotp_size = TP, then requires every logged loss and gradient norm of the TP
# run to equal the one-process run within a relative 1e-5 (f32: the sharded GEMMs and the
# all-reduce change the summation order, so bit equality is not expected).
# Inputs: AUTOTP (the binary), CONFIG, MPI_COMMAND (;-list up to the binary), TP, WORK_DIR,
# and optionally PARALLEL_SETS (;-list of extra --set arguments for the parallel run, e.g. a
# data-parallel size with the micro-batch that keeps the global batch).
file(REMOVE_RECURSE ${WORK_DIR})
set(common ${CONFIG} --set train.steps=4 --set train.log_interval=1
    --set train.checkpoint_interval=0)
execute_process(COMMAND ${AUTOTP} train ${common} --out ${WORK_DIR}/tp1
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the one-process run failed: ${err}")
endif()
execute_process(COMMAND ${MPI_COMMAND} train ${common} --set tensor_parallel.autotp_size=${TP}
                        ${PARALLEL_SETS} --out ${WORK_DIR}/tp
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the TP=${TP} run failed: ${out}\n${err}")
endif()
file(STRINGS ${WORK_DIR}/tp1/metrics.jsonl reference)
file(STRINGS ${WORK_DIR}/tp/metrics.jsonl sharded)
list(LENGTH reference n)
list(LENGTH sharded n_tp)
if(NOT n EQUAL 4 OR NOT n_tp EQUAL 4)
  message(FATAL_ERROR "expected 4 metrics records, got ${n} and ${n_tp}")
endif()
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  list(GET reference ${i} a)
  list(GET sharded ${i} b)
  foreach(key loss grad_norm)
    string(JSON va GET "${a}" ${key})
    string(JSON vb GET "${b}" ${key})
    # |a - b| <= 1e-5 |a|, evaluated by awk (CMake's math is integer-only).
    execute_process(COMMAND awk -v a=${va} -v b=${vb}
                            "BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(d <= 1e-5 * m) }"
                    RESULT_VARIABLE close)
    set(ok FALSE)
    if(close EQUAL 0)
      set(ok TRUE)
    endif()
    if(NOT ok)
      message(FATAL_ERROR "step ${i}: ${key} differs: one process ${va}, TP=${TP} ${vb}")
    endif()
  endforeach()
endforeach()
message(STATUS "TP=${TP} matches the one-process run over ${n} steps")
