# ctest script: the README's library example (the ```cpp block after the sentence naming
# tests/install_consumer/main.cpp) must be that file from its first #include on, unchanged.
# Inputs: README, EXAMPLE.
file(READ ${README} readme)
file(READ ${EXAMPLE} example)
string(FIND "${readme}" "it is `tests/install_consumer/main.cpp`" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README} no longer names tests/install_consumer/main.cpp")
endif()
string(SUBSTRING "${readme}" ${at} -1 readme)
string(FIND "${readme}" "```cpp\n" open)
string(SUBSTRING "${readme}" ${open} -1 readme)
string(LENGTH "```cpp\n" skip)
string(SUBSTRING "${readme}" ${skip} -1 readme)
string(FIND "${readme}" "```\n" close)
string(SUBSTRING "${readme}" 0 ${close} shown)
string(FIND "${example}" "#include" first_include)
string(SUBSTRING "${example}" ${first_include} -1 program)
if(NOT shown STREQUAL program)
  message(FATAL_ERROR "the README's library example differs from ${EXAMPLE} (from its first "
                      "#include on): copy the file into the README")
endif()
message(STATUS "the README shows ${EXAMPLE} unchanged")
