"""Time vLLM's own API-server work per streamed token and per request, on this CPU (anchors for docs/online-model.md).

What the OpenAI server process does for our client's requests (calibrate/run/client.py: prompt token ids, stream,
ignore_eos; the server runs with skip_tokenizer_init, so no detokenization), with the installed vLLM:

- per step and stream: decode the engine core's msgpack message (vllm/v1/serial_utils.py MsgpackDecoder, as
  AsyncMPClient's output socket does), OutputProcessor.process_outputs (vllm/v1/engine/output_processor.py: a
  RequestOutput per request, into its RequestOutputCollector), then the request's own generator builds a
  CompletionStreamResponse and model_dump_json's it (vllm/entrypoints/openai/completion/serving.py
  completion_stream_generator): the per-token cost;
- per request: CompletionRequest validation of the JSON body with 512 prompt token ids (pydantic, as FastAPI
  does) and OutputProcessor.add_request: part of the per-request cost (HTTP parsing, the input processor and the
  ZMQ send are not timed here).

And what this project's client does with each chunk before it stamps the next one (calibrate/run/client.py
``_read_stream`` on an asyncio StreamReader fed with the server's chunks, HTTP chunked framing included; the socket
reads and event-loop wake-ups are not timed): the part of a token's delivery the measuring side adds.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/cpu/frontend_costs.py [--streams 32] [--steps 200]

Prints one JSON line (seconds). Needs vllm (the CPU wheel is enough); no GPU, no server.
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--prompt-len", type=int, default=512)
    args = parser.parse_args()

    import vllm
    from vllm.entrypoints.openai.completion.protocol import (CompletionRequest, CompletionResponseStreamChoice,
                                                             CompletionStreamResponse)
    from vllm.sampling_params import RequestOutputKind, SamplingParams
    from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs, EngineCoreRequest
    from vllm.v1.engine.output_processor import OutputProcessor, RequestOutputCollector
    from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder

    n, prompt = args.streams, [3] * args.prompt_len
    body = {"model": "m", "prompt": prompt, "max_tokens": 10_000, "min_tokens": 10_000, "ignore_eos": True,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    raw = json.dumps(body)
    t = time.perf_counter()
    for _ in range(200):
        request = CompletionRequest.model_validate_json(raw)
    validate_s = (time.perf_counter() - t) / 200

    processor = OutputProcessor(tokenizer=None, log_stats=True)
    queues = []
    t = time.perf_counter()
    for i in range(n):
        params = SamplingParams(max_tokens=10_000, ignore_eos=True, detokenize=False, temperature=0.0,
                                output_kind=RequestOutputKind.DELTA)
        core_request = EngineCoreRequest(request_id=f"r{i}", prompt_token_ids=prompt, mm_features=None,
                                         sampling_params=params, pooling_params=None, arrival_time=time.time(),
                                         lora_request=None, cache_salt=None, data_parallel_rank=None,
                                         external_req_id=f"r{i}")
        queue = RequestOutputCollector(RequestOutputKind.DELTA, f"r{i}")
        processor.add_request(core_request, None, None, 0, queue)
        queues.append(queue)
    add_request_s = (time.perf_counter() - t) / n

    encoder, decoder = MsgpackEncoder(), MsgpackDecoder(EngineCoreOutputs)
    frames = [encoder.encode(EngineCoreOutputs(outputs=[EngineCoreOutput(request_id=f"r{i}", new_token_ids=[5])
                                                        for i in range(n)]))
              for _ in range(args.steps)]
    decode_s = process_s = chunk_s = 0.0
    for frame in frames:
        t0 = time.perf_counter()
        outputs = decoder.decode(frame)
        t1 = time.perf_counter()
        processor.process_outputs(outputs.outputs, time.monotonic(), None)
        t2 = time.perf_counter()
        for i, queue in enumerate(queues):
            out = queue.get_nowait()
            chunk = CompletionStreamResponse(
                id=f"r{i}", object="text_completion", created=0, model="m",
                choices=[CompletionResponseStreamChoice(index=0, text="", logprobs=None, finish_reason=None,
                                                        stop_reason=None, prompt_token_ids=None,
                                                        token_ids=None)])
            _ = f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
            assert out is not None
        t3 = time.perf_counter()
        decode_s, process_s, chunk_s = decode_s + t1 - t0, process_s + t2 - t1, chunk_s + t3 - t2
    tokens = n * args.steps
    client_s = _client_read_per_chunk_s(f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n".encode(),
                                        args.steps * n)
    print(json.dumps({
        "vllm_version": vllm.__version__, "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(), "streams": n, "steps": args.steps, "prompt_len": args.prompt_len,
        "per_token_decode_s": decode_s / tokens, "per_token_process_outputs_s": process_s / tokens,
        "per_token_stream_chunk_s": chunk_s / tokens,
        "per_token_total_s": (decode_s + process_s + chunk_s) / tokens,
        "per_request_validate_body_s": validate_s, "per_request_add_request_s": add_request_s,
        "per_token_client_read_s": client_s,
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


def _client_read_per_chunk_s(event: bytes, num_chunks: int) -> float:
    """Seconds per chunk of calibrate/run/client.py's ``_read_stream`` over one response of ``num_chunks`` SSE
    events, each sent as one HTTP chunk, already in the reader's buffer."""
    import asyncio
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from calibrate.run.client import RequestResult, _read_stream

    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    framed = b"%x\r\n%s\r\n" % (len(event), event)
    response = head + framed * num_chunks + b"0\r\n\r\n"

    async def read() -> float:
        reader = asyncio.StreamReader(limit=1 << 22)
        reader.feed_data(response)
        reader.feed_eof()
        result = RequestResult(prompt_len=1, expected_output_len=num_chunks)
        t = time.perf_counter()
        await _read_stream(reader, result, t)
        elapsed = time.perf_counter() - t
        assert len(result.chunk_s) == num_chunks, "every chunk counted"
        return elapsed / num_chunks

    return min(asyncio.run(read()) for _ in range(3))


if __name__ == "__main__":
    main()
