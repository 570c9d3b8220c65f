"""
README's generated tables (``tests/contract/readme.py``): the table "What is confirmed against
Dintero's own material" says what the contract says, and every operator has a row whose signature
is its real one.
"""

from __future__ import annotations

import re

import pytest

from tests.contract import readme
from tests.contract.contract import Contract


@pytest.fixture(scope="module")
def text() -> str:
    """README.md as it stands."""
    return readme.README.read_text(encoding="utf-8")


def test_readme_is_current(text: str) -> None:
    rendered = readme.render(text)

    stale = "".join(readme.diff(text, rendered))
    assert rendered == text, f"README.md is stale: run `{readme.COMMAND}` and commit it.\n{stale[:4000]}"


def test_the_confirmed_table_is_the_contract(text: str) -> None:
    emptied = readme.BLOCK.sub(
        lambda m: m.group(1) + m.group(5) if m.group(2) == "confirmed" else m.group(0), text
    )

    assert emptied != text
    assert readme.render(emptied) == readme.render(text)


def test_every_contract_operation_has_a_confirmed_row(text: str, contract: Contract) -> None:
    rows = re.findall(r"^\| `(\w+)` \| .* \| (.*) \| (.*) \|$", readme.confirmed_block(contract), re.M)

    assert [name for name, _, _ in rows] == [name for name, _ in readme.by_resource(contract)]
    assert sorted(name for name, _, _ in rows) == sorted(contract.operations)
    assert all(
        (confirmed == "inferred") == (not contract.operations[name].spec["confirmed_by"])
        for name, confirmed, _ in rows
    )


def test_every_operator_has_one_row(text: str) -> None:
    rendered = readme.render(text)
    names = [n for b in readme.BLOCK.finditer(rendered) for n in readme.OPERATOR_SPAN.findall(b.group(4))]
    known = {name for classes in readme.operator_classes().values() for name in classes}

    assert sorted(name for name, _ in names) == sorted(known)


def test_a_missing_operator_row_is_added_from_its_docstring_after_its_resource(text: str) -> None:
    without = (
        "\n".join(line for line in text.splitlines() if "`ListPaymentProfilesOperator(" not in line) + "\n"
    )

    lines = readme.render(without).splitlines()

    at = next(i for i, line in enumerate(lines) if "`ListPaymentProfilesOperator(" in line)
    assert lines[at] == (
        "| `ListPaymentProfilesOperator(account_id)` "
        "| returns the checkout payment profiles of an account |  |"
    )
    assert "PaymentProfileOperator(" in lines[at - 1]  # after its resource's rows, not at the end
    assert "PaymentProfileOperator(" not in lines[at + 1]


@pytest.mark.parametrize(
    ("docstring", "cell"),
    [
        ("Create a widget.", "creates a widget"),
        (
            "Make sure a widget exists; idempotent by `name`.",
            "makes sure a widget exists; idempotent by `name`",
        ),
        ("Replace a widget.", "replaces a widget"),
        ("Copy every widget.", "copies every widget"),
        ("Push a widget.", "pushes a widget"),
        ("API clients of an account.", "API clients of an account"),
    ],
)
def test_a_generated_row_reads_as_a_sentence(docstring: str, cell: str) -> None:
    assert readme._third_person(docstring) == cell


def test_a_row_naming_an_unknown_operator_is_refused(text: str) -> None:
    renamed = text.replace("`GetAccountOperator(account_id)`", "`GetAccountsOperator(account_id)`")

    with pytest.raises(readme.ReadmeError, match="GetAccountsOperator"):
        readme.render(renamed)
