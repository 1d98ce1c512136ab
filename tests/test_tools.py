"""`@tool`: schema generation, argument validation, result serialisation and decoration-time checks."""

import dataclasses
import enum
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from keel import ConfigError, Tool, ToolContext, tool
from keel.tools import TOOL_NAME, ToolArgumentsError


class Currency(str, enum.Enum):  # noqa: UP042 - the classic str-mixin enum is what users write
    EUR = "EUR"
    USD = "USD"


class Priority(enum.IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3


class LineItem(BaseModel):
    sku: str
    quantity: int


class Address(BaseModel):
    street: str
    city: str


class Customer(BaseModel):
    name: str
    address: Address


class Receipt(BaseModel):
    order_id: str
    amount: Decimal
    at: datetime


@dataclasses.dataclass
class Shipment:
    tracking: str
    weight_kg: float


class PlainThing:
    """A class pydantic knows nothing about."""


# One tool per argument type. Each takes a single argument so each case checks one schema in isolation.


@tool
def set_note(note: str) -> str:
    """Set the note."""
    return note


@tool
def set_quantity(quantity: int) -> str:
    """Set the quantity."""
    return str(quantity)


@tool
def set_price(price: float) -> str:
    """Set the price."""
    return str(price)


@tool
def set_gift(gift: bool) -> str:
    """Mark the order as a gift."""
    return str(gift)


@tool
def set_speed(speed: Literal["slow", "fast"]) -> str:
    """Choose the delivery speed."""
    return speed


@tool
def set_currency(currency: Currency) -> str:
    """Choose the currency."""
    return currency.value


@tool
def set_priority(priority: Priority) -> str:
    """Choose the priority."""
    return str(priority)


@tool
def set_label(label: str | None = None) -> str:
    """Set or clear the label."""
    return str(label)


@tool
def list_orders(limit: int = 10) -> str:
    """List recent orders."""
    return str(limit)


@tool
def cancel_orders(ids: list[int]) -> str:
    """Cancel orders by id."""
    return str(ids)


@tool
def add_items(items: list[LineItem]) -> str:
    """Add items to the cart."""
    return str(items)


@tool
def set_stock(stock: dict[str, int]) -> str:
    """Set stock levels per SKU."""
    return str(stock)


@tool
def register_customer(customer: Customer) -> str:
    """Register a customer."""
    return customer.name


@tool
def refund_order(amount: Decimal) -> str:
    """Refund an amount."""
    return str(amount)


@tool
def schedule(at: datetime) -> str:
    """Schedule a delivery."""
    return at.isoformat()


ADDRESS_SCHEMA = {
    "type": "object",
    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
    "required": ["street", "city"],
}
LINE_ITEM_SCHEMA = {
    "type": "object",
    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
    "required": ["sku", "quantity"],
}

# (tool, field, property schema, required?, $defs, valid value, validated value, invalid value, error fragment)
CASES = [
    pytest.param(set_note, "note", {"type": "string"}, True, None, "hi", "hi", 42, "valid string", id="str"),
    pytest.param(set_quantity, "quantity", {"type": "integer"}, True, None, 3, 3, "three", "valid integer",
                 id="int"),
    pytest.param(set_price, "price", {"type": "number"}, True, None, 2.5, 2.5, "cheap", "valid number",
                 id="float"),
    pytest.param(set_gift, "gift", {"type": "boolean"}, True, None, True, True, "maybe", "valid boolean",
                 id="bool"),
    pytest.param(set_speed, "speed", {"type": "string", "enum": ["slow", "fast"]}, True, None, "fast", "fast",
                 "medium", "'slow' or 'fast'", id="Literal"),
    pytest.param(set_currency, "currency", {"$ref": "#/$defs/Currency"}, True,
                 {"Currency": {"type": "string", "enum": ["EUR", "USD"]}}, "USD", Currency.USD, "GBP",
                 "'EUR' or 'USD'", id="str-Enum"),
    pytest.param(set_priority, "priority", {"$ref": "#/$defs/Priority"}, True,
                 {"Priority": {"type": "integer", "enum": [1, 2, 3]}}, 3, Priority.HIGH, 7, "1, 2 or 3",
                 id="int-Enum"),
    pytest.param(set_label, "label", {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}, False,
                 None, None, None, 5, "valid string", id="Optional"),
    pytest.param(list_orders, "limit", {"type": "integer", "default": 10}, False, None, 25, 25, "many",
                 "valid integer", id="default"),
    pytest.param(cancel_orders, "ids", {"type": "array", "items": {"type": "integer"}}, True, None, [1, 2],
                 [1, 2], [1, "two"], "valid integer", id="list[int]"),
    pytest.param(add_items, "items", {"type": "array", "items": {"$ref": "#/$defs/LineItem"}}, True,
                 {"LineItem": LINE_ITEM_SCHEMA}, [{"sku": "A", "quantity": 2}], [LineItem(sku="A", quantity=2)],
                 [{"sku": "A"}], "is required", id="list[model]"),
    pytest.param(set_stock, "stock", {"type": "object", "additionalProperties": {"type": "integer"}}, True, None,
                 {"A": 1}, {"A": 1}, {"A": "lots"}, "valid integer", id="dict[str,int]"),
    pytest.param(register_customer, "customer", {"$ref": "#/$defs/Customer"}, True,
                 {"Address": ADDRESS_SCHEMA, "Customer": {
                     "type": "object",
                     "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/Address"}},
                     "required": ["name", "address"]}},
                 {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}},
                 Customer(name="Ada", address=Address(street="1 Main St", city="Oslo")),
                 {"name": "Ada", "address": {"street": "1 Main St"}}, "is required", id="nested-model"),
    pytest.param(refund_order, "amount", {"anyOf": [{"type": "number"}, {"type": "string"}]}, True, None,
                 "10.50", Decimal("10.50"), "ten", "valid decimal", id="Decimal"),
    pytest.param(schedule, "at", {"type": "string", "format": "date-time"}, True, None, "2024-05-01T12:30:00Z",
                 datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "next tuesday", "valid datetime", id="datetime"),
]

# Where the invalid value of each case fails, below the argument itself.
ERROR_LOCATIONS = {
    "cancel_orders": "ids.1",
    "add_items": "items.0.quantity",
    "set_stock": "stock.A",
    "register_customer": "customer.address.city",
}


@pytest.mark.parametrize(("t", "field", "prop", "required", "defs", "valid", "value", "invalid", "error"), CASES)
def test_schema_shape(
    t: Tool, field: str, prop: dict[str, Any], required: bool, defs: dict[str, Any] | None, valid: Any,
    value: Any, invalid: Any, error: str,
) -> None:
    schema = t.parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"] == {field: prop}
    assert schema.get("required", []) == ([field] if required else [])
    assert schema.get("$defs") == defs
    assert "title" not in json.dumps(schema)  # pydantic's generated titles are stripped


@pytest.mark.parametrize(("t", "field", "prop", "required", "defs", "valid", "value", "invalid", "error"), CASES)
def test_valid_call_validates_to_python_values(
    t: Tool, field: str, prop: dict[str, Any], required: bool, defs: dict[str, Any] | None, valid: Any,
    value: Any, invalid: Any, error: str,
) -> None:
    kwargs = t.validate({field: valid})
    assert kwargs == {field: value}
    assert type(kwargs[field]) is type(value)
    if not required:
        assert field in t.validate({})  # the default is filled in


@pytest.mark.parametrize(("t", "field", "prop", "required", "defs", "valid", "value", "invalid", "error"), CASES)
def test_invalid_call_names_tool_and_field(
    t: Tool, field: str, prop: dict[str, Any], required: bool, defs: dict[str, Any] | None, valid: Any,
    value: Any, invalid: Any, error: str,
) -> None:
    with pytest.raises(ToolArgumentsError) as info:
        t.validate({field: invalid})
    message = str(info.value)
    loc = ERROR_LOCATIONS.get(t.name, field)
    assert message.startswith(f"{t.name}: argument '{loc}' ")
    assert error in message


def test_optional_accepts_none_and_defaults_to_none() -> None:
    assert set_label.validate({"label": None}) == {"label": None}
    assert set_label.validate({}) == {"label": None}
    assert set_label.validate({"label": "fragile"}) == {"label": "fragile"}


def test_default_is_used_when_the_argument_is_left_out() -> None:
    assert "required" not in list_orders.parameters
    assert list_orders.validate({}) == {"limit": 10}


def test_int_rejects_a_fraction() -> None:
    with pytest.raises(ToolArgumentsError, match=r"^set_quantity: argument 'quantity' .*fractional part"):
        set_quantity.validate({"quantity": 2.5})


def test_nested_values_become_model_instances() -> None:
    customer = register_customer.validate(
        {"customer": {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}}}
    )["customer"]
    assert isinstance(customer, Customer)
    assert isinstance(customer.address, Address)
    assert customer.address.city == "Oslo"
    items = add_items.validate({"items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 5}]})["items"]
    assert all(isinstance(i, LineItem) for i in items)
    assert [i.quantity for i in items] == [1, 5]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("10.50", "10.50"), (10.5, "10.5"), (10, "10"), (0.1, "0.1"), ("0.30", "0.30")],
)
def test_decimal_from_string_or_number_is_exact(raw: Any, expected: str) -> None:
    amount = refund_order.validate({"amount": raw})["amount"]
    assert isinstance(amount, Decimal)
    # Compare the text, not the value: 0.1 must not become 0.1000000000000000055511151231257827...
    assert str(amount) == expected
    assert amount == Decimal(expected)


@pytest.mark.parametrize("bad", ["next tuesday", "2024-13-01T00:00:00", "2024-05-01T25:00:00", ""])
def test_datetime_rejects_bad_strings(bad: str) -> None:
    with pytest.raises(ToolArgumentsError, match=r"^schedule: argument 'at' "):
        schedule.validate({"at": bad})


def test_datetime_keeps_the_offset() -> None:
    at = schedule.validate({"at": "2024-05-01T12:30:00+02:00"})["at"]
    assert at.utcoffset() is not None
    assert at.astimezone(UTC) == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)


# Docstrings


@tool
def refund(order_id: str, amount: Decimal, reason: str = "customer request") -> str:
    """Refund an order to the original payment method.

    Args:
        order_id: the order's id, as printed on the receipt.
        amount: how much to refund, in the order's currency;
            never more than was paid.
        reason: why, for the audit log.

    Returns:
        A confirmation.
    """
    return "ok"


def test_description_is_the_docstring_summary() -> None:
    assert refund.description == "Refund an order to the original payment method."
    assert refund.spec() == {
        "name": "refund",
        "description": "Refund an order to the original payment method.",
        "parameters": refund.parameters,
    }


def test_args_descriptions_land_in_the_schema() -> None:
    props = refund.parameters["properties"]
    assert props["order_id"]["description"] == "the order's id, as printed on the receipt."
    assert props["amount"]["description"] == "how much to refund, in the order's currency;\nnever more than was paid."
    assert props["reason"] == {
        "type": "string", "default": "customer request", "description": "why, for the audit log."
    }
    assert refund.parameters["required"] == ["order_id", "amount"]


def test_a_summary_wrapped_over_lines_stays_one_paragraph() -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Look up an order by its id and return its status,
        items and delivery address.

        Args:
            order_id: the order's id.
        """
        return order_id

    assert lookup.description == "Look up an order by its id and return its status,\nitems and delivery address."


def test_long_description_is_kept_and_sections_are_not() -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Look up an order.

        Only orders from the last 90 days are found.

        Args:
            order_id: the order's id.

        Raises:
            ToolError: the order does not exist.
        """
        return order_id

    assert lookup.description == "Look up an order.\n\nOnly orders from the last 90 days are found."


def test_description_argument_overrides_docstring_and_name_is_the_fallback() -> None:
    @tool(description="Find an order.")
    def lookup(order_id: str) -> str:
        """Look up an order."""
        return order_id

    def bare(order_id: str) -> str:
        return order_id

    assert lookup.description == "Find an order."
    assert tool(bare).description == "bare"
    assert "description" not in tool(bare).parameters["properties"]["order_id"]


# Sync, async, context


def test_sync_function() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    assert add.is_async is False
    assert add(2, 3) == 5
    assert add.name == "add"


async def test_async_function() -> None:
    @tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    assert add.is_async is True
    assert await add(2, 3) == 5
    assert add.validate({"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_tool_context_parameter_is_absent_from_the_schema() -> None:
    @tool
    def charge(ctx: ToolContext, amount: Decimal) -> str:
        """Charge the card."""
        return ctx.idempotency_key

    assert charge.context_param == "ctx"
    assert list(charge.parameters["properties"]) == ["amount"]
    assert charge.parameters["required"] == ["amount"]
    assert charge.validate({"amount": "5"}) == {"amount": Decimal("5")}
    # The model cannot forge the context.
    with pytest.raises(ToolArgumentsError, match=r"^charge: unexpected argument 'ctx'"):
        charge.validate({"amount": "5", "ctx": {"run_id": "x"}})


def test_tool_without_context_has_no_context_param() -> None:
    assert refund.context_param is None


# Argument errors


def test_extra_argument_is_rejected() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        refund.validate({"order_id": "A-1", "amount": "5", "note": "hi"})
    assert str(info.value) == "refund: unexpected argument 'note'; remove it"


def test_missing_argument_is_rejected() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        refund.validate({"amount": "5"})
    assert str(info.value) == "refund: argument 'order_id' is required"


def test_every_bad_field_is_named() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        refund.validate({"amount": "ten", "extra": 1})
    message = str(info.value)
    assert "refund: argument 'order_id' is required" in message
    assert "refund: argument 'amount' input should be a valid decimal, got 'ten'" in message
    assert "refund: unexpected argument 'extra'; remove it" in message


@pytest.mark.parametrize(("arguments", "kind"), [(["A-1", "5"], "list"), ("A-1", "str"), (None, "NoneType"),
                                                  (5, "int")])
def test_non_object_arguments_are_rejected(arguments: Any, kind: str) -> None:
    with pytest.raises(ToolArgumentsError) as info:
        refund.validate(arguments)
    assert str(info.value) == f"refund: arguments must be a JSON object, got {kind}"


def test_arguments_error_is_a_value_error() -> None:
    assert issubclass(ToolArgumentsError, ValueError)


# Serialisation of results


@tool
def get_receipt() -> Receipt:
    """Get the receipt."""
    return Receipt(order_id="A-1", amount=Decimal("10.50"), at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC))


@tool
def get_shipment() -> Shipment:
    """Get the shipment."""
    return Shipment("TRK1", 1.5)


@tool
def get_total() -> Decimal:
    """Get the total."""
    return Decimal("10.50")


@tool
def get_time() -> datetime:
    """Get the time."""
    return datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


@tool
def get_items() -> list[LineItem]:
    """Get the items."""
    return [LineItem(sku="A", quantity=1), LineItem(sku="B", quantity=2)]


@tool
def get_anything():  # type: ignore[no-untyped-def]  # no return annotation: serialised by value
    """Get something."""
    return None


RECEIPT_JSON = {"order_id": "A-1", "amount": "10.50", "at": "2024-05-01T12:30:00Z"}


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        pytest.param(get_receipt, RECEIPT_JSON, id="pydantic-model"),
        pytest.param(get_shipment, {"tracking": "TRK1", "weight_kg": 1.5}, id="dataclass"),
        pytest.param(get_total, "10.50", id="Decimal"),
        pytest.param(get_time, "2024-05-01T12:30:00Z", id="datetime"),
        pytest.param(get_items, [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}], id="list[model]"),
    ],
)
def test_structured_results_serialise_to_json(t: Tool, expected: Any) -> None:
    text = t.serialize(t())
    assert isinstance(text, str)
    assert json.loads(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(Receipt(order_id="A-1", amount=Decimal("10.50"), at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
                     RECEIPT_JSON, id="pydantic-model"),
        pytest.param(Shipment("TRK1", 1.5), {"tracking": "TRK1", "weight_kg": 1.5}, id="dataclass"),
        pytest.param(Decimal("10.50"), "10.50", id="Decimal"),
        pytest.param(datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00Z", id="datetime"),
        pytest.param([LineItem(sku="A", quantity=1)], [{"sku": "A", "quantity": 1}], id="list[model]"),
        pytest.param(None, None, id="None"),
    ],
)
def test_results_serialise_without_a_return_annotation(value: Any, expected: Any) -> None:
    assert get_anything.return_adapter is None
    assert json.loads(get_anything.serialize(value)) == expected


@pytest.mark.parametrize("text", ["plain text", '{"already": "json"}', "", "10.50"])
def test_str_results_pass_through_unchanged(text: str) -> None:
    assert set_note.serialize(text) == text
    assert get_receipt.serialize(text) == text  # even when the declared return type is structured
    assert get_anything.serialize(text) == text


def test_unserialisable_result_raises_type_error_naming_the_tool() -> None:
    with pytest.raises(TypeError, match=r"^get_anything: returned a PlainThing, which cannot be serialised"):
        get_anything.serialize(PlainThing())


# Decoration-time checks


@pytest.mark.parametrize("name", ["", "has space", "a" * 65, "café", "add.v2", "add\n", "get/order"])
def test_invalid_names_raise_config_error(name: str) -> None:
    def add(a: int) -> int:
        return a

    with pytest.raises(ConfigError) as info:
        tool(name=name)(add)
    message = str(info.value)
    assert repr(name) in message
    assert TOOL_NAME.pattern in message
    assert "@tool(name=...)" in message


def test_invalid_function_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'<lambda>' is invalid"):
        tool(lambda a: a)


@pytest.mark.parametrize("name", ["a" * 64, "get-order_2", "X", "123"])
def test_valid_names_pass(name: str) -> None:
    def add(a: int) -> int:
        return a

    assert tool(name=name)(add).name == name


@pytest.mark.parametrize("ret", [threading.Lock, type(threading.Lock()), PlainThing])
def test_unserialisable_return_type_raises_config_error(ret: Any) -> None:
    def make(a: int) -> None:
        return None

    make.__annotations__["return"] = ret
    with pytest.raises(ConfigError) as info:
        tool(make)
    message = str(info.value)
    assert message.startswith("tool 'make': return type")
    assert "cannot be serialised to JSON" in message
    assert "return str, a JSON-compatible type, a pydantic model or a dataclass" in message


def test_unserialisable_return_type_written_as_annotation() -> None:
    with pytest.raises(ConfigError, match="cannot be serialised to JSON"):

        @tool
        def lock() -> PlainThing:
            """Make a thing."""
            return PlainThing()


@pytest.mark.parametrize("ret", [str, int, None, Receipt, Shipment, list[LineItem], dict[str, Decimal], Any])
def test_serialisable_return_types_pass(ret: Any) -> None:
    def make(a: int) -> None:
        return None

    make.__annotations__["return"] = ret
    assert tool(make).name == "make"


def test_argument_without_type_hint_raises_config_error() -> None:
    def lookup(order_id, verbose: bool = False) -> str:  # type: ignore[no-untyped-def]
        return str(order_id)

    with pytest.raises(ConfigError) as info:
        tool(lookup)
    assert str(info.value) == (
        "tool 'lookup': argument 'order_id' has no type hint; add one so the model knows what to pass"
    )


def test_argument_type_without_json_schema_raises_config_error() -> None:
    def guard(lock: PlainThing) -> str:
        return "ok"

    with pytest.raises(ConfigError, match=r"^tool 'guard': an argument type has no JSON Schema"):
        tool(guard)


def test_var_positional_raises_config_error() -> None:
    def add(*numbers: int) -> int:
        return sum(numbers)

    with pytest.raises(ConfigError, match=r"^tool 'add': \*numbers is not supported; declare each argument"):
        tool(add)


def test_var_keyword_raises_config_error() -> None:
    def configure(name: str, **options: str) -> str:
        return name

    with pytest.raises(ConfigError, match=r"^tool 'configure': \*\*options is not supported; declare each argument"):
        tool(configure)


@pytest.mark.parametrize("timeout", [0, -1, -0.5])
def test_non_positive_timeout_raises_config_error(timeout: float) -> None:
    with pytest.raises(ConfigError, match=r"^tool 'set_note': timeout must be positive seconds"):
        tool(timeout=timeout)(set_note.func)


def test_timeout_is_kept() -> None:
    assert tool(timeout=0.5)(set_note.func).timeout == 0.5
    assert set_note.timeout is None


def test_metadata_is_kept() -> None:
    fallback = tool(name="refund_by_hand")(refund.func)
    t = tool(side_effects=True, idempotent=True, requires_approval=True, fallback=fallback)(refund.func)
    assert (t.side_effects, t.idempotent, t.requires_approval, t.fallback) == (True, True, True, fallback)
    assert (refund.side_effects, refund.idempotent, refund.requires_approval, refund.fallback) == (
        False, False, False, None)


def test_bare_and_called_decorator_build_the_same_tool() -> None:
    bare = tool(refund.func)
    called = tool()(refund.func)
    assert isinstance(bare, Tool)
    assert isinstance(called, Tool)
    assert bare.spec() == called.spec()
    assert repr(bare) == "Tool('refund')"
