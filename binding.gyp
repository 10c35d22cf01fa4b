{
  "targets": [
    {
      "target_name": "ctwatch",
      "sources": [
        "native/addon.cc",
        "native/netns.cc",
        "native/files.cc",
        "native/privileges.cc",
        "native/conntrack/reader.cc",
        "native/conntrack/reader_js.cc",
        "native/conntrack/batches.cc",
        "native/conntrack/decode.cc",
        "native/conntrack/sockets.cc",
        "native/attribution/diag.cc",
        "native/attribution/procfs.cc",
        "native/attribution/owner_index.cc",
        "native/attribution/diag_join.cc",
        "native/attribution/attribution.cc",
        "native/attribution/bpf_stamps.cc",
        "native/attribution/bpf_join.cc",
        "native/attribution/stamp_copy.cc",
        "native/attribution/local.cc",
        "native/attribution/seed.cc"
      ],
      "actions": [
        {
          "action_name": "bpf_skeleton",
          "inputs": [
            "native/attribution/bpf/build.sh",
            "native/attribution/bpf/owner.bpf.c",
            "native/attribution/bpf/kernel.h",
            "native/attribution/bpf/stamp.h"
          ],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/bpf/owner.skel.h"],
          "action": ["sh", "native/attribution/bpf/build.sh", "<(SHARED_INTERMEDIATE_DIR)/bpf"],
          "message": "BPF: compiling the attribution programs and their skeleton"
        }
      ],
      "include_dirs": ["native", "<(SHARED_INTERMEDIATE_DIR)/bpf", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["<!@(pkg-config --libs libnetfilter_conntrack libmnl)", "-lbpf"],
      "cflags": ["<!@(pkg-config --cflags libnetfilter_conntrack libmnl)"]
    }
  ]
}
