"""The export package: what happens to a span once it ends, behind one name.

`ExportPipeline` (pipeline.py) runs the finisher (redact, scrubbing, content and
media rules, the length bound), the console view, the local store's queue and the
batcher that feeds the exporter (HTTP transport or gRPC). `Redact` is the type of
`initialize(redact=...)`.
"""

from traceroot._export.finisher import Redact
from traceroot._export.pipeline import ExportPipeline

__all__ = ["ExportPipeline", "Redact"]
