"""The gRPC edge: the only package that imports generated protobuf code."""
