#!/usr/bin/env python3
"""Instruction mix of every loop in chosen kernels of a CUDA object (static SASS, no GPU).

A loop is the code between a backward branch and its target; its count is what one iteration
issues at most (branches it skips included), so it bounds the issue slots per iteration.
Kernels whose loops hold far more instructions than their tensor-core (HMMA) or memory work
needs are issue-bound: the figure to cut.

  sass_loop_counts.py FILE [--kernel REGEX ...] [--json OUT]

FILE is a cubin, an object file or an executable with embedded SASS (cuobjdump reads it; it
needs nvdisasm beside it, both in the CUDA toolkit's bin/). Example, for the tensor-core
attention at sm_90:

  nvcc -arch=sm_90 -cubin -O3 -std=c++20 --expt-relaxed-constexpr -I. \\
      -o /tmp/tca.cubin kernels/cuda/tensor_core_attention.cu
  tools/gpu/sass_loop_counts.py /tmp/tca.cubin --kernel 'forward_kernelILi64E13__nv_bfloat16'
"""
import argparse
import collections
import json
import re
import subprocess
import sys

FUNCTION = re.compile(r"Function : (\S+)")
INSTRUCTION = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?);")
BRANCH_TARGET = re.compile(r"\bBRA\b.*?0x([0-9a-f]+)")
PREDICATE = re.compile(r"^@!?U?P[T0-9]+\s+")


def read_sass(path):
    try:
        return subprocess.run(["cuobjdump", "-sass", path], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        sys.exit("sass_loop_counts: cuobjdump is not on PATH (it is in the CUDA toolkit's bin/)")
    except subprocess.CalledProcessError as error:
        sys.exit(f"sass_loop_counts: cuobjdump failed on {path}: {error.stderr.strip()}")


def functions(sass):
    """{mangled name: [(address, instruction text)]}"""
    result, current = {}, None
    for line in sass.splitlines():
        match = FUNCTION.search(line)
        if match:
            current = match.group(1)
            result[current] = []
            continue
        match = INSTRUCTION.match(line)
        if current and match:
            result[current].append((int(match.group(1), 16), match.group(2).strip()))
    return result


def opcode(text):
    return PREDICATE.sub("", text).split()[0].split(".")[0]


def loops(instructions):
    found = []
    for address, text in instructions:
        match = BRANCH_TARGET.search(text)
        if match and int(match.group(1), 16) < address:
            start = int(match.group(1), 16)
            body = [t for a, t in instructions if start <= a <= address]
            mix = collections.Counter(opcode(t) for t in body)
            found.append({"start": hex(start), "end": hex(address), "instructions": len(body),
                          "hmma": mix.get("HMMA", 0), "mix": dict(mix.most_common())})
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--kernel", action="append", default=[],
                        help="regular expression on the mangled name (any of them); default all")
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args()
    report = []
    for name, instructions in functions(read_sass(args.file)).items():
        if args.kernel and not any(re.search(k, name) for k in args.kernel):
            continue
        entry = {"kernel": name, "instructions": len(instructions), "loops": loops(instructions)}
        report.append(entry)
        print(f"{name}: {len(instructions)} instructions")
        for loop in entry["loops"]:
            top = " ".join(f"{op}:{n}" for op, n in list(loop["mix"].items())[:12])
            print(f"  loop {loop['start']}-{loop['end']}: {loop['instructions']} instructions, "
                  f"{loop['hmma']} HMMA  ({top})")
    if not report:
        sys.exit("sass_loop_counts: no kernel matched")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
