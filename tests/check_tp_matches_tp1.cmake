# ctest script: trains the tiny Llama for 20 steps on one process and under mpirun with
# tensor_parallel.autotp_size = TP, then requires every logged loss and gradient norm of the TP
# run (metrics.jsonl) to equal the one-process run within a relative 1e-5 (f32: the sharded
# GEMMs and the all-reduce change the summation order, so bit equality is not expected; after
# 20 steps the gradient norms of TP=2 differ by ~3e-8 relative). The TP run also saves a
# checkpoint at its last step: `autotp export` of that checkpoint (reassembled from the TP
# shards) must be byte-identical to the HF directory the run itself exported (gathered), and the
# weights after the 20th update (which no logged loss reflects) must match the one-process
# run's: `autotp eval` of both exports on the same batches gives losses within a relative 1e-5.
# Inputs: AUTOTP (the binary), CONFIG, MPI_COMMAND (;-list up to the binary), TP, WORK_DIR,
# and optionally PARALLEL_SETS (;-list of extra --set arguments for the parallel run, e.g. a
# data-parallel size with the micro-batch that keeps the global batch).
file(REMOVE_RECURSE ${WORK_DIR})
set(steps 20)
set(common ${CONFIG} --set train.steps=${steps} --set train.log_interval=1)
execute_process(COMMAND ${AUTOTP} train ${common} --set train.checkpoint_interval=0
                        --out ${WORK_DIR}/tp1
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the one-process run failed: ${err}")
endif()
execute_process(COMMAND ${MPI_COMMAND} train ${common} --set tensor_parallel.autotp_size=${TP}
                        --set train.checkpoint_interval=${steps} ${PARALLEL_SETS}
                        --out ${WORK_DIR}/tp
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the TP=${TP} run failed: ${out}\n${err}")
endif()
file(STRINGS ${WORK_DIR}/tp1/metrics.jsonl reference)
file(STRINGS ${WORK_DIR}/tp/metrics.jsonl sharded)
list(LENGTH reference n)
list(LENGTH sharded n_tp)
if(NOT n EQUAL ${steps} OR NOT n_tp EQUAL ${steps})
  message(FATAL_ERROR "expected ${steps} metrics records, got ${n} and ${n_tp}")
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

execute_process(COMMAND ${AUTOTP} export ${WORK_DIR}/tp ${WORK_DIR}/exported
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "autotp export of the TP=${TP} checkpoint failed: ${out}\n${err}")
endif()
file(SHA256 ${WORK_DIR}/exported/model.safetensors exported)
file(SHA256 ${WORK_DIR}/tp/hf/model.safetensors gathered)
if(NOT exported STREQUAL gathered)
  message(FATAL_ERROR "the export of the TP=${TP} checkpoint differs from the run's HF export")
endif()
message(STATUS "${out}")

# The final weights of both runs, through the loss they give on the same evaluation batches.
set(eval_losses "")
foreach(run tp1 tp)
  execute_process(COMMAND ${AUTOTP} eval ${CONFIG} --model ${WORK_DIR}/${run}/hf --batches 4
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "autotp eval of the ${run} export failed: ${out}\n${err}")
  endif()
  string(REGEX MATCH "\\{\"loss\":[^,]+" json_loss "${out}")
  if(NOT json_loss)
    message(FATAL_ERROR "autotp eval of the ${run} export printed no JSON loss: ${out}")
  endif()
  string(REGEX REPLACE "^\\{\"loss\":" "" value "${json_loss}")
  list(APPEND eval_losses ${value})
endforeach()
list(GET eval_losses 0 va)
list(GET eval_losses 1 vb)
execute_process(COMMAND awk -v a=${va} -v b=${vb}
                        "BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(d <= 1e-5 * m) }"
                RESULT_VARIABLE close)
if(NOT close EQUAL 0)
  message(FATAL_ERROR "the final weights differ: eval loss one process ${va}, TP=${TP} ${vb}")
endif()
message(STATUS "final weights: eval loss one process ${va}, TP=${TP} ${vb}")
