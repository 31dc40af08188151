"""A tiny shopping cart with a discount bug for goalkeeper's demo."""


def subtotal(prices: list[float]) -> float:
    """Sum of item prices."""
    return sum(prices)


def apply_discount(total: float, percent: float) -> float:
    """Total after a percentage discount, rounded to cents."""
    return round(total - total * percent, 2)


def checkout(prices: list[float], percent: float = 0.0) -> float:
    """What the customer pays."""
    return apply_discount(subtotal(prices), percent)
