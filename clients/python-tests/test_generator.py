"""The generator reads openapi.yaml without a warning."""

from conftest import Generated


def test_generator_emits_no_warnings(generated: Generated) -> None:
    assert generated.returncode == 0, generated.output
    assert "warning" not in generated.output.lower(), (
        "openapi-python-client warned about openapi.yaml:\n" + generated.output
    )
