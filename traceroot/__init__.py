"""traceroot"""
