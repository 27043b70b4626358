# Runs `autotp train CONFIG --out WORK_DIR --set train.steps=STEPS` and checks WORK_DIR's
# metrics.jsonl: the last logged loss must be below MAX_FINAL_LOSS and below MAX_RATIO x the
# first logged loss. ctest's cli.tiny_llama_trains runs it:
#   cmake -DAUTOTP=bin/autotp -DCONFIG=configs/tiny-llama.yaml -DWORK_DIR=... -DSTEPS=40
#         -DMAX_FINAL_LOSS=3.2 -DMAX_RATIO=0.6 -P tests/check_training.cmake

# A non-negative decimal ("5.518476", "3", "0.6") as an integer number of thousandths
# (truncated), since CMake's math() has integers only.
function(to_milli text out)
  if(NOT text MATCHES "^([0-9]+)(\\.([0-9]*))?$")
    message(FATAL_ERROR "not a plain decimal: '${text}'")
  endif()
  set(int_part ${CMAKE_MATCH_1})
  string(SUBSTRING "${CMAKE_MATCH_3}000" 0 3 frac3)
  math(EXPR value "${int_part} * 1000 + 1${frac3} - 1000")  # "1" prefix: no octal reading
  set(${out} ${value} PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${AUTOTP} train ${CONFIG} --out ${WORK_DIR} --set train.steps=${STEPS}
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "autotp train exited with ${result}")
endif()
file(STRINGS ${WORK_DIR}/metrics.jsonl records)
list(LENGTH records count)
if(count LESS 2)
  message(FATAL_ERROR "metrics.jsonl holds ${count} records, expected at least 2")
endif()
list(GET records 0 first_record)
list(GET records -1 last_record)
string(JSON first GET "${first_record}" loss)
string(JSON last GET "${last_record}" loss)
string(JSON last_step GET "${last_record}" step)
to_milli(${first} first_milli)
to_milli(${last} last_milli)
to_milli(${MAX_FINAL_LOSS} max_milli)
to_milli(${MAX_RATIO} ratio_milli)
math(EXPR bound "${first_milli} * ${ratio_milli} / 1000")
message(STATUS "first logged loss ${first}, loss at step ${last_step}: ${last}")
if(NOT last_milli LESS max_milli OR NOT last_milli LESS bound)
  message(FATAL_ERROR "the loss did not fall enough: ${first} -> ${last} (needs < ${MAX_FINAL_LOSS} "
                      "and < ${MAX_RATIO} x ${first})")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
