import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

interface ChartProps {
  /** Everything but the size, which follows the container. */
  options: Omit<uPlot.Options, 'width' | 'height'>;
  data: uPlot.AlignedData;
  height?: number;
  /** A sentence describing what the chart shows, for screen readers. */
  label: string;
}

/** A uPlot chart that fills its container's width and redraws when it resizes. */
export function Chart({ options, data, height = 220, label }: ChartProps) {
  const ref = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const width = () => Math.max(200, Math.floor(el.getBoundingClientRect().width));
    const plot = new uPlot({ ...options, width: width(), height }, data, el);
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => plot.setSize({ width: width(), height }));
    });
    observer.observe(el);
    return () => {
      cancelAnimationFrame(frame);
      observer.disconnect();
      plot.destroy();
    };
  }, [options, data, height]);

  return <div ref={ref} role="img" aria-label={label} className="w-full min-w-0 overflow-hidden" />;
}

export const chartColors = {
  brand: '#4f46e5',
  brandFill: 'rgba(79, 70, 229, 0.12)',
  usage: '#0891b2',
  usageFill: 'rgba(8, 145, 178, 0.75)',
  grid: '#e2e8f0',
  axis: '#475569',
};

export const axisStyle: Partial<uPlot.Axis> = {
  stroke: chartColors.axis,
  grid: { stroke: chartColors.grid, width: 1 },
  ticks: { stroke: chartColors.grid, width: 1 },
};
