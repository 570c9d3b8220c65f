"""
Operators for Dintero account details.

Example::

    from airflow_provider_dintero.operators.accounts import GetAccountOperator

    account = GetAccountOperator(task_id="account", account_id="{{ params.merchant_id }}")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import Account


class GetAccountOperator(DinteroBaseOperator):
    """
    Read an account's details (company, applicant incl. ``signup_reference``) and return them.

    A partner connection reads any of its merchants (through the exchange token flow); a
    merchant connection reads itself.

    :param account_id: the merchant (or the connection's own account), e.g. ``T11200001``.
        Templated.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        GetAccountOperator(task_id="account", account_id="{{ params.merchant_id }}")
        # XCom: {"account_id": "T11200001", "company": {...}, "applicant": {"signup_reference": ...}}
    """

    template_fields: Sequence[str] = ("account_id",)

    def __init__(
        self,
        *,
        account_id: str,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id

    def execute(self, context: Any) -> Account:
        """
        Return the account's details.

        :param context: the Airflow task context.
        """
        account_id = validate_account_id(self.account_id)
        account = self.hook.get_account(account_id)
        company = (account or {}).get("company") or {}
        signup_reference = ((account or {}).get("applicant") or {}).get("signup_reference")
        self.log.info(
            "Dintero account %s: %s (active=%s, signup reference %s)",
            account_id,
            company.get("business_name") or "no business name",
            (account or {}).get("active"),
            signup_reference or "not set",
        )
        return account
