{
  "targets": [
    {
      "target_name": "l7mp_bpf",
      "sources": ["src/addon.cc", "src/reuseport.cc"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "../../offload"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
