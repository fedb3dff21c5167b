{
  "targets": [
    {
      "target_name": "l7mp_sockets",
      "sources": ["src/addon.cc", "src/fdsock.cc", "src/rawstream.cc", "src/reactor.cc", "src/pair.cc", "src/splice.cc", "src/forward.cc", "src/udpfwd.cc", "src/syscalls.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "conditions": [["OS!='linux'", {"sources!": ["src/fdsock.cc", "src/rawstream.cc", "src/reactor.cc", "src/pair.cc", "src/splice.cc", "src/forward.cc", "src/udpfwd.cc", "src/syscalls.cc"]}]]
    }
  ]
}
