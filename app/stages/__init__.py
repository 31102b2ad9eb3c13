"""The five stages of the customer journey, in journey order."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    purchase = "purchase"
    consultation = "consultation"
    rental = "rental"
    delivery = "delivery"
    after_service = "after_service"

    @property
    def position(self) -> int:
        return list(Stage).index(self) + 1


STAGE_NAMES: dict[Stage, str] = {
    Stage.purchase: "Purchase",
    Stage.consultation: "Consultation",
    Stage.rental: "Rental",
    Stage.delivery: "Delivery",
    Stage.after_service: "After-service",
}
