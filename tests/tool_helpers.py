"""What the tool-calling tests share: two tools, and gridloom's adapters built for either
provider type."""

from __future__ import annotations

import httpx

from gridloom.clients import AnthropicClient, OpenAIClient, Secret, ToolSpec
from gridloom.config import ProviderConfig

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
TOOLS = (
    ToolSpec(name="get_weather", description="The forecast.", parameters=WEATHER),
    ToolSpec(name="get_time", description="The time.", parameters=TIME),
)
SCHEMAS = {tool.name: tool.parameters for tool in TOOLS}
KINDS = ["openai", "anthropic"]

Client = OpenAIClient | AnthropicClient


def provider(kind: str, url: str = "http://api.test/v1") -> ProviderConfig:
    return ProviderConfig(name="p", type=kind, endpoint=url)  # type: ignore[arg-type]


def adapter(kind: str, http: httpx.AsyncClient, config: ProviderConfig) -> Client:
    cls = OpenAIClient if kind == "openai" else AnthropicClient
    return cls(http, provider=config, api_key=Secret("sk-test"))
