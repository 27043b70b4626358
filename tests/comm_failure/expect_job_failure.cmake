# Runs an MPI job that must fail: passes when it exits non-zero within the time limit and its
# output matches EXPECTED (a regex). COMMAND is the command line with "^^" between arguments.
string(REPLACE "^^" ";" command "${COMMAND}")
execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 90)
set(all "${out}\n${err}")
message(STATUS "exit: ${result}\n${all}")
if(result EQUAL 0)
  message(FATAL_ERROR "the job exited with 0; it should have failed")
endif()
if(result MATCHES "timeout|Process terminated due to timeout")
  message(FATAL_ERROR "the job hung: it was still running after 90 s")
endif()
if(all MATCHES "usage: comm_failure_job")
  message(FATAL_ERROR "the job rejected its arguments: the failure under test never ran")
endif()
if(NOT all MATCHES "${EXPECTED}")
  message(FATAL_ERROR "the output does not match '${EXPECTED}'")
endif()
