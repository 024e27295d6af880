"""The one kind of figure the results draw: lines with 2-s.e. bars on log–log axes."""


def loglog(ax, lines, xlabel, ylabel, title):
    """Draws ``lines``, each ``(x, y, se, label)``, with error bars of 2 s.e. on ``ax``
    (a new figure's axes when ``None``; needs matplotlib) and returns the axes."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    for x, y, se, label in lines:
        ax.errorbar(x, y, yerr=2 * se, marker="o", capsize=2, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax
